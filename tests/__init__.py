"""The test suites, one folder per package of the code they test (channels, bots, router,
models, desk with its api and runtime), and the fakes of outside services (tests/fakes/)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout
DATA = ROOT / "tests" / "data"  # labelled appeals, a corpus of mails
