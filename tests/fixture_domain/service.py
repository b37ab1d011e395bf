import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.fixture_domain.models import Sighting


def sightings(*, session: Session, ref: str | None = None) -> list[str]:
    query = sa.select(Sighting.entity_ref).order_by(Sighting.id)
    if ref is not None:
        query = query.where(Sighting.entity_ref == ref)
    return list(session.scalars(query))
