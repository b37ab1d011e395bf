"""Makers for the alerting tests: a team owning ``checkout``, its integrations, alert bodies."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from lamplighter.alerting import integrations
from lamplighter.alerting.models import Alert, AlertGroup
from lamplighter.alerting.schemas import IntegrationIn
from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core.db import Database
from lamplighter.core.models import Event, Team, User
from tests.conftest import SYSTEM, make_team, make_token, make_user

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alerting"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


class Org:
    """A team (lead and member) owning the service ``checkout``; an outsider; a viewer."""

    def __init__(self, db: Database, name: str = "checkout") -> None:
        self.db = db
        self.lead: User = make_user(db)
        self.member: User = make_user(db)
        self.team: Team = make_team(db, lead=self.lead, members=[self.member])
        self.outsider: User = make_user(db)
        self.viewer: User = make_user(db, role="viewer")
        with db.transaction() as session:
            self.entity: Entity = catalog.create(
                session=session,
                actor=SYSTEM,
                data=catalog.EntityInput(
                    kind="service",
                    name=name,
                    owner=self.team.slug,
                    links=[
                        {
                            "url": "https://runbooks.example.com/checkout",
                            "title": "Runbook",
                            "type": "runbook",
                        }
                    ],
                ),
            )
            self.entity_ref = self.entity.ref

    def token(self, user: User | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(self.db, user or self.member)}"}

    def integration(self, kind: str = "alertmanager", **fields: Any) -> tuple[int, str]:
        data = {
            "name": f"{kind}-{fields.pop('suffix', 'main')}",
            "kind": kind,
            "entity": self.entity_ref,
        }
        data.update(fields)
        with self.db.transaction() as session:
            integration, key = integrations.create(
                session=session, actor=SYSTEM, data=IntegrationIn.model_validate(data)
            )
            return integration.id, key


def groups(db: Database) -> list[AlertGroup]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(AlertGroup).order_by(AlertGroup.id)))


def alerts(db: Database) -> list[Alert]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(Alert).order_by(Alert.id)))


def event_types(db: Database, prefix: str = "alert.") -> list[str]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(
                sa.select(Event.type).where(Event.type.startswith(prefix)).order_by(Event.id)
            )
        )


def am_body(
    *,
    status: str = "firing",
    fingerprints: tuple[str, ...] = ("a1",),
    group_key: str = '{}:{alertname="HighErrorRate"}',
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    base = fixture("alertmanager-0.27-firing.json")
    template = base["alerts"][0]
    items = []
    for fingerprint in fingerprints:
        alert = copy.deepcopy(template)
        alert["status"] = status
        alert["fingerprint"] = fingerprint
        alert["labels"] = {**alert["labels"], "instance": f"{fingerprint}:8080", **(labels or {})}
        items.append(alert)
    return {**base, "status": status, "alerts": items, "groupKey": group_key}


def pd_event(
    key: str, action: str = "trigger", dedup_key: str | None = "disk-full", **payload: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {"routing_key": key, "event_action": action}
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    if action == "trigger":
        event["payload"] = {
            "summary": payload.pop("summary", "Disk on db-1 is 95 % full"),
            "source": "db-1",
            "severity": payload.pop("severity", "critical"),
            **payload,
        }
    return event
