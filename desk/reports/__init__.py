"""Reports and the daily digest: appeal, SLA, rating, customer and top reports, their charts and
texts, and the report columns written as things happen."""
