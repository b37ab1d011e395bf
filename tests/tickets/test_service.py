"""Request journal: intake, life cycle, targets, comments, work logs, recorded work, queues."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.core import identity, inbox
from lamplighter.core.context import Actor
from lamplighter.core.errors import Conflict, Forbidden, ValidationFailed
from lamplighter.core.models import AuditEntry
from lamplighter.tickets import service
from lamplighter.tickets.models import StatusChange, Ticket
from tests.catalog.conftest import make_entity
from tests.conftest import SYSTEM, make_team, make_user


def actor_of(db: Any, user: Any) -> Actor:
    with db.sessionmaker() as session:
        return identity._actor_for(session, user, kind="user")


@pytest.fixture
def org(db: Any) -> dict[str, Any]:
    sre_lead = make_user(db, email="sre-lead@example.com", role="sre")
    sre = make_user(db, email="sre@example.com")
    dev = make_user(db, email="dev@example.com")
    outsider = make_user(db, email="out@example.com")
    viewer = make_user(db, email="view@example.com", role="viewer")
    make_team(db, slug="sre", lead=sre_lead, members=[sre])
    make_team(db, slug="payments", lead=dev)
    with db.transaction() as session:
        service.save_type(
            session=session,
            actor=SYSTEM,
            slug="database",
            name="Database",
            default_team="sre",
            expected_effort_minutes=90,
        )
    return {
        name: actor_of(db, user)
        for name, user in [("sre", sre), ("dev", dev), ("outsider", outsider), ("viewer", viewer)]
    }


def new_ticket(db: Any, actor: Actor, now: dt.datetime | None = None, **fields: Any) -> Ticket:
    data = service.TicketInput(
        type=fields.pop("type", "database"),
        title=fields.pop("title", "A database for ledger"),
        **fields,
    )
    with db.transaction() as session:
        return service.create(session=session, actor=actor, data=data, now=now)


def test_intake_sets_team_targets_and_history(db: Any, org: dict[str, Any]) -> None:
    make_entity(db, "ledger", "payments")
    ticket = new_ticket(db, org["dev"], priority="P2", entity="ledger", labels=["Urgent", "pci"])
    with db.sessionmaker() as session:
        fresh = session.get(Ticket, ticket.id)
        assert fresh is not None
        assert fresh.status == "new" and fresh.priority == "P2"
        assert fresh.assignee_team_id == identity.get_team(session=session, slug="sre").id
        assert fresh.requesting_team_id == identity.get_team(session=session, slug="payments").id
        assert fresh.labels == ["pci", "urgent"]
        assert (fresh.first_response_due_at - fresh.created_at) == dt.timedelta(hours=1)
        assert (fresh.done_due_at - fresh.created_at) == dt.timedelta(days=1)
        assert [c.to_status for c in session.scalars(sa.select(StatusChange))] == ["new"]


def test_unknown_type_entity_and_viewer_are_refused(db: Any, org: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        new_ticket(db, org["dev"], type="espresso")
    assert (
        caught.value.errors[0].field == "body.type" and "database" in caught.value.errors[0].reason
    )
    with pytest.raises(ValidationFailed) as caught:
        new_ticket(db, org["dev"], entity="service:ghost")
    assert caught.value.errors[0].field == "body.entity"
    with pytest.raises(Forbidden):
        new_ticket(db, org["viewer"])
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 0


def test_life_cycle_and_disallowed_transitions(db: Any, org: dict[str, Any]) -> None:
    ticket = new_ticket(db, org["dev"])
    start = ticket.created_at
    for step, status in enumerate(
        ["triaged", "in_progress", "waiting", "in_progress", "done"], start=1
    ):
        with db.transaction() as session:
            service.transition(
                session=session,
                actor=org["sre"],
                ticket_id=ticket.id,
                to_status=status,
                now=start + dt.timedelta(hours=step),
            )
    with db.sessionmaker() as session:
        done = session.get(Ticket, ticket.id)
        assert done is not None
        assert done.resolution == "manual" and done.time_to_done_s == 5 * 3600
        assert done.first_response_at == start + dt.timedelta(hours=1)
        changes = [
            (c.from_status, c.to_status)
            for c in session.scalars(sa.select(StatusChange).order_by(StatusChange.id))
        ]
        assert changes[-1] == ("in_progress", "done") and len(changes) == 6
    with db.transaction() as session, pytest.raises(Conflict) as caught:
        service.transition(session=session, actor=org["sre"], ticket_id=ticket.id, to_status="new")
    assert "can move to in_progress, not new" in caught.value.detail
    with db.transaction() as session:  # reopening clears the resolution
        reopened = service.transition(
            session=session, actor=org["sre"], ticket_id=ticket.id, to_status="in_progress"
        )
        assert reopened.done_at is None and reopened.resolution is None


def test_only_the_assigned_team_moves_it_and_requester_is_told(
    db: Any, org: dict[str, Any]
) -> None:
    ticket = new_ticket(db, org["dev"])
    for who in ("outsider", "dev", "viewer"):
        with db.transaction() as session, pytest.raises(Forbidden):
            service.transition(
                session=session, actor=org[who], ticket_id=ticket.id, to_status="triaged"
            )
    with db.transaction() as session:
        service.transition(
            session=session, actor=org["sre"], ticket_id=ticket.id, to_status="triaged"
        )
    with db.sessionmaker() as session:
        notices = inbox.list_for(session=session, user_id=org["dev"].user_id)
        assert [n.title for n in notices] == [f"Ticket #{ticket.id} is now triaged"]
        assert notices[0].link == f"/tickets/{ticket.id}"


def test_comments_count_as_first_response_unless_from_the_requester(
    db: Any, org: dict[str, Any]
) -> None:
    ticket = new_ticket(db, org["dev"])
    with db.transaction() as session:
        service.add_comment(
            session=session, actor=org["dev"], ticket_id=ticket.id, body="Any news?"
        )
        assert session.get(Ticket, ticket.id).first_response_at is None
        service.add_comment(
            session=session, actor=org["sre"], ticket_id=ticket.id, body="Looking now"
        )
        assert session.get(Ticket, ticket.id).first_response_at is not None
    with db.transaction() as session, pytest.raises(Forbidden):
        service.add_comment(
            session=session, actor=org["outsider"], ticket_id=ticket.id, body="me too"
        )


def test_work_log_bounds(db: Any, org: dict[str, Any]) -> None:
    ticket = new_ticket(db, org["dev"])
    for minutes in (0, -5, 24 * 60 + 1):
        with db.transaction() as session, pytest.raises(ValidationFailed) as caught:
            service.log_work(
                session=session, actor=org["sre"], ticket_id=ticket.id, minutes=minutes
            )
        assert caught.value.errors[0].field == "body.minutes"
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with db.transaction() as session, pytest.raises(ValidationFailed):
        service.log_work(
            session=session, actor=org["sre"], ticket_id=ticket.id, minutes=10, logged_at=future
        )
    with db.transaction() as session:
        service.log_work(session=session, actor=org["sre"], ticket_id=ticket.id, minutes=45)
        service.log_work(session=session, actor=org["sre"], ticket_id=ticket.id, minutes=15)
    with db.sessionmaker() as session:
        assert session.get(Ticket, ticket.id).effort_minutes == 60


def test_record_resolved_work_counts_effort_saved(db: Any, org: dict[str, Any]) -> None:
    with db.transaction() as session:
        ticket = service.record_resolved_work(
            session=session,
            actor=SYSTEM,
            type_slug="database",
            title="payments-db by template",
            resolution="self-service",
            resolved_by="template_run:7",
        )
    assert (ticket.status, ticket.resolution, ticket.effort_minutes) == ("done", "self-service", 90)
    with db.transaction() as session, pytest.raises(ValidationFailed):
        service.record_resolved_work(
            session=session,
            actor=SYSTEM,
            type_slug="database",
            title="x",
            resolution="manual",
            resolved_by="x",
        )
    with db.sessionmaker() as session:
        actions = list(
            session.scalars(sa.select(AuditEntry.action).where(AuditEntry.object_type == "ticket"))
        )
    assert actions == ["ticket.record_resolved_work"]


def test_queue_views(db: Any, org: dict[str, Any]) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    overdue = new_ticket(db, org["dev"], priority="P1", now=old, title="Overdue")
    fresh = new_ticket(db, org["dev"], priority="P4", title="Fresh")
    mine = new_ticket(db, org["dev"], title="Mine", assignee="sre@example.com")
    with db.transaction() as session:
        service.transition(
            session=session, actor=org["sre"], ticket_id=mine.id, to_status="in_progress"
        )

    def titles(**filters: Any) -> list[str]:
        with db.sessionmaker() as session:
            return [
                t.title
                for t in service.queue(
                    session=session,
                    filters=service.QueueFilters(**filters),
                    after_id=None,
                    limit=50,
                )
            ]

    assert titles(view="triage") == ["Overdue", "Fresh"]
    assert titles(view="mine", user_id=org["sre"].user_id) == ["Mine"]
    assert titles(view="breaching") == ["Overdue"]
    with db.sessionmaker() as session:
        sre_team = identity.get_team(session=session, slug="sre").id
        assert service.breach(session.get(Ticket, overdue.id)) == "past its target time to done"
        assert service.breach(session.get(Ticket, fresh.id)) is None
    assert titles(view="team", team_id=sre_team) == ["Overdue", "Fresh", "Mine"]
    assert titles(priority="P4") == ["Fresh"]
