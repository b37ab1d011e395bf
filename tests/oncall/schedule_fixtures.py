"""Shared makers for the schedule tests: a team owning the service ``checkout`` with three
people to rotate, an outsider, a viewer and an SRE; schedules made through the service.

Clock changes the tests lean on: Europe/Berlin springs forward on Sunday 28 March 2027 at 01:00
UTC and falls back on Sunday 31 October 2027 at 01:00 UTC; America/New_York on Sunday 14 March
2027 at 07:00 UTC and Sunday 7 November 2027 at 06:00 UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.models import Team, User
from lamplighter.oncall import on_duty, schedules
from lamplighter.oncall.models import EscalationPolicy, OnCallSchedule
from lamplighter.oncall.schedule_schemas import OverrideCreate, ScheduleCreate
from tests.conftest import SYSTEM, make_team, make_user

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone))


def actor_of(db: Database, user: User) -> Actor:
    with db.sessionmaker() as session:
        return Actor(
            kind="user",
            label=user.email,
            user_id=user.id,
            role=user.role,
            team_ids=identity.team_ids_of(session=session, user_id=user.id),
        )


def rotation(
    name: str,
    participants: list[int],
    *,
    kind: str = "daily",
    every: int = 1,
    start: dt.datetime,
    time_zone: str | None = None,
    restrictions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A layer of one rotation from ``start`` (its anchor), as the API takes it."""
    version: dict[str, Any] = {
        "effective_from": start.isoformat(),
        "participants": participants,
        "kind": kind,
        "every": every,
    }
    if time_zone is not None:
        version["time_zone"] = time_zone
    if restrictions is not None:
        version["restrictions"] = restrictions
    return {"name": name, "versions": [version]}


class Org:
    """Team ``oncall-team`` (lead Ada, members Bo and Cy) owning ``service:default/checkout``;
    an outsider in another team, a viewer and an SRE in none."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ada = make_user(db, email="ada@example.com")
        self.bo = make_user(db, email="bo@example.com")
        self.cy = make_user(db, email="cy@example.com")
        self.team: Team = make_team(
            db, slug="oncall-team", lead=self.ada, members=[self.bo, self.cy]
        )
        self.outsider = make_user(db, email="out@example.com")
        self.other_team = make_team(db, slug="elsewhere", lead=self.outsider)
        self.viewer = make_user(db, email="viewer@example.com", role="viewer")
        self.sre = make_user(db, email="sre@example.com", role="sre")
        with db.transaction() as session:
            self.entity: Entity = catalog.create(
                session=session,
                actor=SYSTEM,
                data=catalog.EntityInput(kind="service", name="checkout", owner=self.team.slug),
            )
            session.expunge(self.entity)

    @property
    def people(self) -> list[int]:
        return [self.ada.id, self.bo.id, self.cy.id]

    def name_of(self, user_id: int) -> str:
        return {self.ada.id: "ada", self.bo.id: "bo", self.cy.id: "cy"}.get(user_id, "?")

    def schedule(
        self,
        layers: list[dict[str, Any]],
        *,
        name: str = "primary",
        time_zone: str = "UTC",
        team: str | None = None,
    ) -> OnCallSchedule:
        data = ScheduleCreate.model_validate(
            {"team": team or self.team.slug, "name": name, "time_zone": time_zone, "layers": layers}
        )
        with self.db.transaction() as session:
            schedule = schedules.create(session=session, actor=SYSTEM, data=data)
            session.expunge(schedule)
        return schedule

    def override(self, schedule_id: int, user: User, start: dt.datetime, end: dt.datetime) -> int:
        data = OverrideCreate(user_id=user.id, starts_at=start, ends_at=end, reason="swap")
        with self.db.transaction() as session:
            row = schedules.create_override(
                session=session, actor=SYSTEM, schedule_id=schedule_id, data=data
            )
            return row.id

    def default_policy(self, targets: list[dict[str, Any]]) -> None:
        """The team's default escalation policy, its first tier notifying ``targets``."""
        with self.db.transaction() as session:
            session.add(
                EscalationPolicy(
                    team_id=self.team.id,
                    name="default",
                    tiers=[
                        {"name": "Frontline", "delay_minutes": 0, "targets": targets},
                        {
                            "name": "Lead",
                            "delay_minutes": 10,
                            "targets": [{"type": "user", "id": self.ada.id}],
                        },
                    ],
                    is_team_default=True,
                )
            )

    def on_call(self, schedule_id: int, at: dt.datetime) -> list[str]:
        """Who is on call on the schedule at ``at``, by first name."""
        with self.db.sessionmaker() as session:
            return [self.name_of(u) for u in on_duty.on_call_user_ids(session, schedule_id, at)]


@pytest.fixture
def org(db: Database) -> Org:
    return Org(db)
