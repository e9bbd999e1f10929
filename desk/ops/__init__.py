"""What operators see and lean on: logs (secrets masked), log context, Prometheus metrics, the
database outage watch, daily jobs and the graceful-stop gate."""
