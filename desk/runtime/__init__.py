"""The process: the CLI, the service wiring of one process (serve or worker), token commands."""
