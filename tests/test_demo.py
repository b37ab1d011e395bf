"""`lamplighter demo load` (what `make run` calls) fills every domain once, and only once."""

from __future__ import annotations

import json
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
        "slo": True,
        "oncall": True,
    }
    assert demo.load(db) == {
        "organisation": False,
        "catalog": False,
        "tickets": False,
        "selfservice": False,
        "slo": False,
        "oncall": False,
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


def test_demo_load_says_what_it_loaded_and_how_to_sign_in_but_no_address(run_cli: Any) -> None:
    first = run_cli("demo", "load")
    assert first.exit_code == 0, first.output
    assert "admin@example.com" in first.output and "lamplighter-demo" in first.output
    assert "loaded" in first.output and "catalog" in first.output
    # It cannot know where a server runs (`lamplighter serve` prints its own address).
    assert "http" not in first.output and "8080" not in first.output
    again = run_cli("demo", "load", "--output", "json")
    body = json.loads(again.output)
    assert body["catalog"] is False and body["admin_email"] == "admin@example.com"
    assert "url" not in body
