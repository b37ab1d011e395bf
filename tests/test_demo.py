"""`lamplighter demo load` (what `make run` calls) fills every domain once, and only once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lamplighter import demo
from lamplighter.catalog import graph
from lamplighter.catalog import service as catalog
from lamplighter.core import audit
from lamplighter.tickets.models import Ticket


def test_demo_loads_once_with_a_catalog_and_a_journal(db: Any) -> None:
    assert demo.load(db) == {
        "organisation": True,
        "catalog": True,
        "tickets": True,
        "selfservice": True,
    }
    assert demo.load(db) == {
        "organisation": False,
        "catalog": False,
        "tickets": False,
        "selfservice": False,
    }
    with db.sessionmaker() as session:
        ledger = catalog.get_by_ref(session=session, ref="ledger")
        owner = catalog.who_owns(session=session, ref="ledger")
        assert owner.team is not None and owner.team.slug == "payments" and owner.problems == []
        database = catalog.get_by_ref(session=session, ref="resource:payments-db")
        blast = graph.traverse(session=session, root_id=database.id, reverse=True, depth=5)
        assert len(blast.reached) == 3  # ledger, payments-gateway, checkout-web
        assert ledger.tier == 1
        statuses = dict(
            session.execute(sa.select(Ticket.status, sa.func.count()).group_by(Ticket.status)).all()
        )
        assert statuses["done"] == 3 and statuses["new"] == 1
        assert audit.verify(session=session).ok
