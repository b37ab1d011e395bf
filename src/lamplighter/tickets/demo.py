"""The ticket journal's part of the demo: two days of requests in every state."""

from __future__ import annotations

import datetime as dt

from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.tickets import service as tickets

ACTOR = Actor.system("demo loader")

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


def load(db: Database) -> bool:
    """Create the demo journal unless there are tickets already; whether anything was created."""
    with db.transaction() as session:
        if tickets.queue(session=session, filters=tickets.QueueFilters(), after_id=None, limit=1):
            return False
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
    return True
