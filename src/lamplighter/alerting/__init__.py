"""Alerting: integrations, alert intake, dedup, grouping, routing, silences (issue 14)."""
