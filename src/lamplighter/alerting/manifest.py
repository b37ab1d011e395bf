"""Alerting as a domain: integrations, alert intake, dedup, grouping, routing, silences,
heartbeats."""

from lamplighter.core.events import Subscription
from lamplighter.core.manifest import Manifest

# SLO burn-rate and budget events become alerts (alerting/slo_alerts.py handles the job).
SLO_EVENTS = (
    "slo.burn_rate_high",
    "slo.burn_rate_ok",
    "slo.budget_exhausted",
    "slo.budget_recovered",
)

manifest = Manifest(
    name="alerting",
    api=("lamplighter.alerting.api:router", "lamplighter.alerting.ingest_api:router"),
    # PagerDuty's Events API v2 path, outside /api/v1, so senders change only the host.
    pages=("lamplighter.alerting.ingest_api:enqueue_router",),
    cli={
        "alert": "lamplighter.alerting.cli:alert_app",
        "integration": "lamplighter.alerting.cli:integration_app",
    },
    models=("lamplighter.alerting.models",),
    event_types=("lamplighter.alerting.event_types",),
    registers=("lamplighter.alerting.heartbeats", "lamplighter.alerting.slo_alerts"),
    subscriptions=tuple(Subscription(event, "alerting.slo_event") for event in SLO_EVENTS),
)
