"""Alerting as a domain: integrations, alert intake, dedup, grouping, routing, silences,
heartbeats."""

from lamplighter.core.manifest import Manifest

manifest = Manifest(
    name="alerting",
    api=("lamplighter.alerting.api:router",),
    cli={
        "alert": "lamplighter.alerting.cli:alert_app",
        "integration": "lamplighter.alerting.cli:integration_app",
    },
    models=("lamplighter.alerting.models",),
    event_types=("lamplighter.alerting.event_types",),
)
