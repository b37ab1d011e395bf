"""Shared makers for the SLO tests: a team owning a service, SLOs on it, events in it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.models import Team, User
from lamplighter.slo import service
from lamplighter.slo.models import Slo
from lamplighter.slo.schemas import SloIn
from tests.conftest import SYSTEM, make_team, make_user


def actor_of(db: Database, user: User) -> Actor:
    with db.sessionmaker() as session:
        return Actor(
            kind="user",
            label=user.email,
            user_id=user.id,
            role=user.role,
            team_ids=identity.team_ids_of(session=session, user_id=user.id),
        )


class Org:
    """A team (lead and a member) owning the service ``checkout``; an outsider in no team."""

    def __init__(self, db: Database, name: str = "checkout", tier: int = 1) -> None:
        self.db = db
        self.lead = make_user(db)
        self.member = make_user(db)
        self.team: Team = make_team(db, lead=self.lead, members=[self.member])
        self.outsider = make_user(db)
        with db.transaction() as session:
            self.entity: Entity = catalog.create(
                session=session,
                actor=SYSTEM,
                data=catalog.EntityInput(
                    kind="service",
                    name=name,
                    owner=self.team.slug,
                    tier=tier,
                    links=[{"url": "http://127.0.0.1:9/healthz", "title": "Health"}],
                ),
            )

    def slo(self, **fields: Any) -> tuple[Slo, str | None]:
        data: dict[str, Any] = {
            "entity": self.entity.ref,
            "name": "availability",
            "objective": 99.9,
            "source": "events",
        }
        data.update(fields)
        with self.db.transaction() as session:
            slo, key = service.create(session=session, actor=SYSTEM, data=SloIn(**data))
            session.expunge(slo)
        return slo, key


@pytest.fixture
def org(db: Database) -> Org:
    return Org(db)


def steady(
    start: dt.datetime, minutes: int, per_minute: int, bad_per_minute: float = 0.0
) -> list[tuple[dt.datetime, int, int]]:
    """Per-minute points from ``start``: ``per_minute`` events, ``bad_per_minute`` of them bad
    (fractions accumulate, so 0.5 is one bad event every other minute)."""
    points = []
    owed = 0.0
    for minute in range(minutes):
        owed += bad_per_minute
        bad = int(owed)
        owed -= bad
        points.append((start + dt.timedelta(minutes=minute), per_minute - bad, per_minute))
    return points
