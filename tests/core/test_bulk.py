"""Bulk inserts (``COPY`` on PostgreSQL): rows read back exactly as an ORM insert stores them,
with the Python-side defaults filled in, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.catalog.models import Entity, Relation
from lamplighter.core.bulk import insert_rows
from lamplighter.core.db import Database
from lamplighter.core.models import Team, User

NOW = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def _owner(db: Database) -> tuple[int, int]:
    with db.transaction() as session:
        user = User(email="lead@example.com", display_name="Lead")
        session.add(user)
        session.flush()
        team = Team(slug="payments", name="Payments", lead_user_id=user.id)
        session.add(team)
        session.flush()
        return team.id, user.id


def _row(n: int, team_id: int, user_id: int) -> dict[str, Any]:
    return {
        "kind": "service",
        "name": f"svc-{n}",
        "name_key": f"svc-{n}",
        "owner_team_id": team_id,
        "accountable_user_id": user_id,
        "tags": ["pci", "ü-tag", 'quote"d'],
        "labels": {"tab": "a\tb", "newline": "x\ny", "backslash": "c:\\path"},
        "annotations": {"nested": {"list": [1, 2.5, None, True]}},
        "created_at": NOW,
        "updated_at": NOW,
    }


def test_rows_read_back_as_sent_with_python_defaults(db: Database) -> None:
    team_id, user_id = _owner(db)
    with db.transaction() as session:
        insert_rows(session, Entity, [_row(n, team_id, user_id) for n in range(3)])
    with db.sessionmaker() as session:
        entities = session.scalars(sa.select(Entity).order_by(Entity.name)).all()
    assert [e.name for e in entities] == ["svc-0", "svc-1", "svc-2"]
    first = entities[0]
    assert first.tags == ["pci", "ü-tag", 'quote"d']
    assert first.labels == {"tab": "a\tb", "newline": "x\ny", "backslash": "c:\\path"}
    assert first.annotations == {"nested": {"list": [1, 2.5, None, True]}}
    assert first.created_at == NOW and first.created_at.tzinfo is not None
    # columns the rows left out take the model's Python-side defaults
    assert (first.namespace, first.lifecycle, first.tier, first.links) == (
        "default",
        "production",
        3,
        [],
    )
    assert first.description == "" and first.spec_extra == {}


def test_a_failed_transaction_leaves_no_rows(db: Database) -> None:
    team_id, user_id = _owner(db)
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as session:
        insert_rows(session, Entity, [_row(1, team_id, user_id)])
        insert_rows(  # a relation to an entity that does not exist
            session,
            Relation,
            [{"source_id": 1_000_000, "type": "depends_on", "target_id": 1_000_001}],
        )
        session.flush()
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Entity)) == 0


def test_rows_with_different_keys_are_refused(db: Database) -> None:
    team_id, user_id = _owner(db)
    rows = [_row(1, team_id, user_id), {"kind": "service"}]
    with pytest.raises((ValueError, sa.exc.StatementError, KeyError)), db.transaction() as session:
        insert_rows(session, Entity, rows)
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Entity)) == 0
