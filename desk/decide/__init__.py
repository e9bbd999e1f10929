"""Decisions applied: routing (category, priority, owner), the SLA clock and the automation rules;
`router/` decides, this package loads what a decision needs and applies it."""
