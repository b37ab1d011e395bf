"""Alerting as a domain: integrations, alert intake, dedup, grouping, routing, silences,
heartbeats."""

from lamplighter.core.manifest import Manifest

manifest = Manifest(
    name="alerting",
    models=("lamplighter.alerting.models",),
    event_types=("lamplighter.alerting.event_types",),
)
