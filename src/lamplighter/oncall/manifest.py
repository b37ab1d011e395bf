"""On-call as a domain: schedules, escalation policies, contact methods and notifications."""

from lamplighter.core.events import Subscription
from lamplighter.core.manifest import Manifest, NavEntry

manifest = Manifest(
    name="oncall",
    api=(
        "lamplighter.oncall.schedule_api:router",
        "lamplighter.oncall.people_api:router",
        "lamplighter.oncall.report_api:router",
    ),
    # The feeds are read by calendar apps at a secret URL, outside /api/v1.
    pages=(
        "lamplighter.oncall.feeds:router",
        "lamplighter.oncall.frontline_pages:router",
        "lamplighter.oncall.alert_setup_pages:router",
        "lamplighter.oncall.oncall_pages:router",
    ),
    nav=(
        NavEntry(
            "/alerts", "Alerts", "Alert groups, on-call, integrations and silences.", order=50
        ),
    ),
    cli={
        "schedule": "lamplighter.oncall.schedule_cli:schedule_app",
        "oncall": "lamplighter.oncall.schedule_cli:oncall_app",
    },
    models=("lamplighter.oncall.models",),
    registers=("lamplighter.oncall.escalation", "lamplighter.oncall.notify"),
    demo="lamplighter.oncall.demo:load",
    # "On call now" on the catalog's entity and team pages, and in `catalog who-owns`.
    entity_panels=("lamplighter.oncall.panels:entity_panel",),
    team_panels=("lamplighter.oncall.panels:team_panel",),
    entity_facts=("lamplighter.oncall.panels:entity_facts",),
    # The alerting domain's group events drive the escalations (oncall/escalation.py).
    subscriptions=(
        Subscription("alert.group_triggered", "oncall.escalation_start"),
        Subscription("alert.group_escalated", "oncall.escalate_now"),
        Subscription("alert.group_reassigned", "oncall.reassigned"),
        Subscription("alert.group_acknowledged", "oncall.escalation_stop"),
        Subscription("alert.group_resolved", "oncall.escalation_stop"),
        # The rows of deleted groups (they carry no foreign key to cascade by).
        Subscription("alert.integration_deleted", "oncall.forget_groups"),
    ),
)
