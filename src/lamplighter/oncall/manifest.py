"""On-call as a domain: schedules, escalation policies, contact methods and notifications."""

from lamplighter.core.manifest import Manifest

manifest = Manifest(
    name="oncall",
    models=("lamplighter.oncall.models",),
)
