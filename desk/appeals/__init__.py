"""The appeal core: intake of the stream in batches, the lifecycle, customers and their contact
points, typed domain events and their bus, the history, the outbox, tasks and triage."""
