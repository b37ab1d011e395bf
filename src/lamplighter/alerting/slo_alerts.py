"""SLO burn-rate and budget events become alerts on the SLO's entity.

The alerting domain subscribes to the SLO domain's events (manifest ``subscriptions``); each
SLO entity gets one built-in integration (kind ``slo``) owned by the entity's team, so these
alerts are routed, grouped (by SLO), silenced and escalated like any other.

- ``slo.burn_rate_high`` triggers ``slo:<id>:<alert>`` (a page alert is critical, a ticket
  alert a warning); ``slo.burn_rate_ok`` resolves it;
- ``slo.budget_exhausted`` triggers ``slo:<id>:budget`` (error); ``slo.budget_recovered``
  resolves it.
"""

from __future__ import annotations

from lamplighter.alerting import integrations, store
from lamplighter.alerting.intake import IncomingAlert
from lamplighter.catalog import service as catalog
from lamplighter.core import events, jobs
from lamplighter.core.errors import LamplighterError

SLO_EVENT_JOB = "alerting.slo_event"


def alert_for(event: events.Delivered) -> IncomingAlert:
    payload = event.payload
    slo_id, name, entity = payload["id"], payload["slo"], payload["entity"]
    labels = {"slo": name, "entity": entity}
    if event.type in ("slo.burn_rate_high", "slo.burn_rate_ok"):
        alert_name = payload["alert"]
        severity = "critical" if payload.get("severity") == "page" else "warning"
        summary = f"SLO {name} of {entity} burns its error budget too fast ({alert_name})"
        if event.type == "slo.burn_rate_high" and payload.get("long_burn_rate") is not None:
            summary += f": {payload['long_burn_rate']:.1f}x over {payload['long_window']}"
        return IncomingAlert(
            action="trigger" if event.type == "slo.burn_rate_high" else "resolve",
            dedup_key=f"slo:{slo_id}:{alert_name}",
            summary=summary,
            severity=severity,  # type: ignore[arg-type]
            source="lamplighter slo",
            received_format="generic",
            labels={**labels, "alertname": "SloBurnRate", "slo_alert": alert_name},
        )
    return IncomingAlert(
        action="trigger" if event.type == "slo.budget_exhausted" else "resolve",
        dedup_key=f"slo:{slo_id}:budget",
        summary=f"SLO {name} of {entity} has spent its error budget",
        severity="error",
        source="lamplighter slo",
        received_format="generic",
        labels={**labels, "alertname": "SloBudgetExhausted"},
    )


@jobs.handler(SLO_EVENT_JOB)
def on_slo_event(ctx: jobs.JobContext) -> None:
    event = events.delivered(ctx)
    try:
        entity = catalog.get_by_ref(
            session=ctx.session, ref=event.payload["entity"], field="entity"
        )
    except LamplighterError:  # the entity is gone since: nothing to alert about
        return
    if entity.owner_team_id is None:  # nobody to page: the SLO page shows the state
        return
    integration = integrations.slo_integration(
        ctx.session, entity_id=entity.id, team_id=entity.owner_team_id
    )
    snapshot = integrations.snapshot_of(integration, entity.ref)
    store.write_in(ctx.session, [store.Submission(snapshot, [alert_for(event)])])
