import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lamplighter.core.db import UTCDateTime, utcnow


class FixtureBase(DeclarativeBase):
    """A plugin domain's own tables: its migrations are a branch of their own."""


class Sighting(FixtureBase):
    __tablename__ = "fixture_sightings"

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_ref: Mapped[str] = mapped_column(sa.String(200), index=True)
    event_id: Mapped[int] = mapped_column(sa.BigInteger, unique=True)  # idempotent by event
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
