"""On-call as a domain: schedules, escalation policies, contact methods and notifications."""

from lamplighter.core.manifest import Manifest

manifest = Manifest(
    name="oncall",
    api=("lamplighter.oncall.schedule_api:router", "lamplighter.oncall.people_api:router"),
    # The feeds are read by calendar apps at a secret URL, outside /api/v1.
    pages=("lamplighter.oncall.feeds:router",),
    cli={
        "schedule": "lamplighter.oncall.schedule_cli:schedule_app",
        "oncall": "lamplighter.oncall.schedule_cli:oncall_app",
    },
    models=("lamplighter.oncall.models",),
)
