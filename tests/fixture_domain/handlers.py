from lamplighter.core import events, jobs
from tests.fixture_domain.manifest import SIGHTING
from tests.fixture_domain.models import Sighting


@jobs.handler(SIGHTING)
def record_sighting(ctx: jobs.JobContext) -> None:
    """React to ``catalog.entity_created``: note the entity."""
    event = events.delivered(ctx)
    ctx.session.add(Sighting(entity_ref=str(event.payload["ref"]), event_id=event.id))
