"""Fakes of external APIs that benchmarks and tests both drive (bench/ may not import tests/)."""
