"""The demo organisation `make run` loads once: teams and people, a catalog, a request journal.

It composes every domain's services, so it lives above them all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

from lamplighter.catalog import service as catalog
from lamplighter.catalog.refs import Ref
from lamplighter.core import demo as core_demo
from lamplighter.core import identity
from lamplighter.core.clikit import Output, OutputOpt, emit, local_db
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.settings import get_settings
from lamplighter.selfservice import golden
from lamplighter.tickets import service as tickets

ACTOR = Actor.system("demo loader")

# kind, name, owner, title, type, extra fields
ENTITIES: list[tuple[str, str, str, str, str | None, dict[str, Any]]] = [
    (
        "domain",
        "commerce",
        "platform",
        "Commerce",
        None,
        {"description": "Everything between a basket and a payout."},
    ),
    ("system", "checkout", "checkout", "Checkout system", None, {"domain": "commerce"}),
    ("system", "payments", "payments", "Payments system", None, {"domain": "commerce"}),
    (
        "platform",
        "container-platform",
        "platform",
        "Container platform v3",
        "kubernetes",
        {"version": "3.4", "tier": 1},
    ),
    (
        "resource",
        "payments-db",
        "payments",
        "Payments database",
        "database",
        {"system": "payments", "tier": 1},
    ),
    ("resource", "orders-topic", "checkout", "Orders topic", "topic", {"system": "checkout"}),
    (
        "resource",
        "checkout-db",
        "checkout",
        "Checkout database",
        "database",
        {"system": "checkout"},
    ),
    (
        "api",
        "payments-api",
        "payments",
        "Payments API",
        "openapi",
        {"system": "payments", "tier": 1},
    ),
    (
        "service",
        "ledger",
        "payments",
        "Ledger",
        "service",
        {
            "system": "payments",
            "tier": 1,
            "tags": ["pci", "money"],
            "depends_on": ["resource:payments-db", "platform:container-platform"],
            "description": "Double-entry ledger of every payment and payout.",
            "links": [
                {
                    "url": "https://runbooks.example.com/ledger",
                    "title": "Runbook",
                    "type": "runbook",
                },
                {
                    "url": "https://grafana.example.com/d/ledger",
                    "title": "Dashboard",
                    "type": "dashboard",
                },
            ],
        },
    ),
    (
        "service",
        "payments-gateway",
        "payments",
        "Payments gateway",
        "service",
        {
            "system": "payments",
            "tier": 1,
            "tags": ["pci"],
            "provides_apis": ["payments-api"],
            "depends_on": ["service:ledger", "platform:container-platform"],
        },
    ),
    (
        "service",
        "checkout-web",
        "checkout",
        "Checkout web",
        "website",
        {
            "system": "checkout",
            "tier": 2,
            "consumes_apis": ["payments-api"],
            "depends_on": [
                "service:payments-gateway",
                "resource:checkout-db",
                "resource:orders-topic",
            ],
        },
    ),
    (
        "service",
        "order-events",
        "checkout",
        "Order events",
        "service",
        {
            "system": "checkout",
            "lifecycle": "experimental",
            "depends_on": ["resource:orders-topic"],
        },
    ),
]

# type, title, requester, priority, status path, minutes of work
TICKETS: list[tuple[str, str, str, str, list[str], int]] = [
    (
        "database",
        "Read replica for payments-db",
        "priya@example.com",
        "P2",
        ["triaged", "in_progress"],
        40,
    ),
    ("access-grant", "Read access to payments-db for Tom", "tom@example.com", "P3", [], 0),
    (
        "dns-certificate",
        "Renew checkout.example.com certificate",
        "diego@example.com",
        "P1",
        ["triaged", "in_progress", "done"],
        25,
    ),
    (
        "new-repository",
        "Repository for order-events",
        "diego@example.com",
        "P3",
        ["triaged", "done"],
        20,
    ),
    (
        "capacity",
        "More CPU quota for checkout-web",
        "diego@example.com",
        "P2",
        ["triaged", "waiting"],
        10,
    ),
]


def load(db: Database) -> dict[str, bool]:
    """Load each part of the demo that is not there yet."""
    loaded = {"organisation": core_demo.load(db), "catalog": False, "tickets": False}
    with db.transaction() as session:
        if catalog.find(session, Ref("service", "default", "ledger")) is None:
            for kind, name, owner, title, type_, extra in ENTITIES:
                fields: dict[str, Any] = {"title": title, "type": type_, **extra}
                data = catalog.EntityInput(kind=kind, name=name, owner=owner, **fields)
                catalog.create(session=session, actor=ACTOR, data=data)
            loaded["catalog"] = True
    with db.transaction() as session:
        if not tickets.queue(
            session=session, filters=tickets.QueueFilters(), after_id=None, limit=1
        ):
            tickets.save_type(
                session=session,
                actor=ACTOR,
                slug="database",
                name="Database",
                description="Provision a database and its credentials.",
                default_team="platform",
                expected_effort_minutes=90,
            )
            sre = Actor.system("demo SRE")
            start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
            for index, (type_slug, title, requester, priority, path, minutes) in enumerate(TICKETS):
                user = identity.get_user_by_email(session=session, email=requester)
                assert user is not None
                requester_actor = identity._actor_for(session, user, kind="user")
                created_at = start + dt.timedelta(hours=index * 3)
                ticket = tickets.create(
                    session=session,
                    actor=requester_actor,
                    data=tickets.TicketInput(type=type_slug, title=title, priority=priority),
                    now=created_at,
                )
                for step, status in enumerate(path, start=1):
                    tickets.transition(
                        session=session,
                        actor=sre,
                        ticket_id=ticket.id,
                        to_status=status,
                        now=created_at + dt.timedelta(hours=step),
                    )
                if minutes:
                    tickets.log_work(
                        session=session,
                        actor=sre,
                        ticket_id=ticket.id,
                        minutes=minutes,
                        logged_at=created_at + dt.timedelta(hours=1),
                    )
            tickets.record_resolved_work(
                session=session,
                actor=ACTOR,
                type_slug="new-repository",
                title="Repository for ledger-reports (golden path)",
                resolution="self-service",
                resolved_by="template_run:demo",
            )
            loaded["tickets"] = True
    with db.transaction() as session:
        # The golden paths, owned by the demo's platform team; unchanged files change nothing.
        golden.load_golden(session=session, actor=ACTOR, owner="platform")
    return loaded


demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)


@demo_app.command("load")
def demo_load(output: OutputOpt = Output.TABLE) -> None:
    """Load the demo organisation once (teams, people, catalog, tickets) and print how to log in."""
    db = local_db()
    try:
        loaded = load(db)
    finally:
        db.dispose()
    emit(
        {**loaded, **core_demo.CREDENTIALS, "url": get_settings().base_url},
        output,
        title="Demo organisation",
    )
