"""In-app event subscriptions and typed event payloads (core/events.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core import events, jobs
from lamplighter.core.db import Database
from lamplighter.core.models import Event, Job
from lamplighter.core.settings import Settings
from tests.conftest import SYSTEM, make_team, make_user
from tests.helpers import PASSWORD, drain, job_handlers, sign_in

REACT = "test.react_to_team"
SEEN: list[tuple[int, str, dict[str, Any]]] = []
FAILS_LEFT: dict[str, int] = {}


def _react(ctx: jobs.JobContext) -> None:
    event = events.delivered(ctx)
    if FAILS_LEFT.get("n", 0) > 0:  # a flaky reaction: fails, then is retried
        FAILS_LEFT["n"] -= 1
        raise RuntimeError("the reaction failed this time")
    SEEN.append((event.id, event.type, event.payload))


@pytest.fixture
def subscribed() -> Iterator[None]:
    SEEN.clear()
    FAILS_LEFT.clear()
    subscription = events.Subscription("team.*", REACT)
    with job_handlers({REACT: _react}):
        events.subscribe(subscription)
        try:
            yield
        finally:
            events.unsubscribe(subscription)


def _jobs_of(db: Database, kind: str) -> list[Job]:
    with db.sessionmaker() as session:
        return list(session.scalars(sa.select(Job).where(Job.kind == kind).order_by(Job.id)))


def test_a_subscriber_gets_one_job_per_matching_event_and_reads_the_event(
    db: Database, settings: Settings, subscribed: None
) -> None:
    lead = make_user(db, email="lead@example.com")
    team = make_team(db, slug="payments", lead=lead)
    jobs_now = _jobs_of(db, REACT)
    assert len(jobs_now) == 1  # team.created matched; user.created did not
    with db.sessionmaker() as session:
        created = session.scalars(sa.select(Event).where(Event.type == "team.created")).one()
    assert jobs_now[0].idempotency_key == f"event:{REACT}:{created.id}"

    drain(db, settings)
    assert [(created.id, "team.created", {"slug": team.slug, "lead": "lead@example.com"})] == SEEN


def test_a_reaction_is_in_the_emitting_transaction_and_rolls_back_with_it(
    db: Database, subscribed: None
) -> None:
    lead = make_user(db)
    with pytest.raises(RuntimeError), db.transaction() as session:
        events.emit(
            session=session,
            type="team.member_added",
            subject="team:x",
            payload={"email": lead.email},
        )
        raise RuntimeError("the change fails after emitting")
    assert _jobs_of(db, REACT) == []
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Event)) == 1  # user.created


def test_a_failing_reaction_is_retried_and_runs_once_per_event(
    db: Database, settings: Settings, subscribed: None
) -> None:
    FAILS_LEFT["n"] = 2
    lead = make_user(db)
    make_team(db, slug="checkout", lead=lead)
    drain(db, settings)
    (job,) = _jobs_of(db, REACT)
    assert (job.status, job.attempts) == ("done", 3)
    assert [kind for _, kind, _ in SEEN] == ["team.created"]
    # The same event delivered again (a replay) is a no-op: the job is keyed by the event id.
    with db.transaction() as session:
        event = session.scalars(sa.select(Event).where(Event.type == "team.created")).one()
        jobs.enqueue_keyed(
            session=session,
            jobs=[
                {
                    "kind": REACT,
                    "payload": {"event_id": event.id},
                    "idempotency_key": f"event:{REACT}:{event.id}",
                }
            ],
        )
    assert len(_jobs_of(db, REACT)) == 1


def test_bulk_emits_fan_out_to_subscribers_too(
    db: Database, settings: Settings, subscribed: None
) -> None:
    with db.transaction() as session:
        ids = events.emit_many(
            session=session,
            pending=[
                events.Pending("team.member_added", "team:a", {"email": f"p{n}@example.com"})
                for n in range(5)
            ],
        )
    assert ids == sorted(ids) and len(ids) == 5
    drain(db, settings)
    assert [event_id for event_id, _, _ in SEEN] == ids


def test_an_undeclared_type_or_a_wrong_payload_fails_in_tests(db: Database) -> None:
    assert events.STRICT
    with db.transaction() as session:
        with pytest.raises(events.UndeclaredEvent):
            events.emit(session=session, type="team.exploded", subject="team:x", payload={})
        with pytest.raises(pydantic.ValidationError):
            events.emit(session=session, type="team.created", subject="team:x", payload={})
        with pytest.raises(pydantic.ValidationError):  # unknown keys are refused as well
            events.emit(
                session=session,
                type="team.member_added",
                subject="team:x",
                payload={"email": "a@example.com", "password": "oops"},
            )


def test_in_production_a_wrong_payload_is_logged_and_the_change_goes_through(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(events, "STRICT", False)
    with db.transaction() as session:
        events.emit(session=session, type="team.created", subject="team:x", payload={"n": 1})
    assert "does not match its type" in caplog.text
    with db.sessionmaker() as session:
        assert session.scalars(sa.select(Event.payload)).one() == {"n": 1}


def test_event_types_are_published_with_their_payload_schemas(
    client: TestClient, db: Database
) -> None:
    assert client.get("/api/v1/events/types").status_code == 401
    sign_in(client, make_user(db, password=PASSWORD))
    types = {t["type"]: t for t in client.get("/api/v1/events/types").json()}
    expected = {
        "catalog.entity_created",
        "catalog.entity_deleted",
        "catalog.imported",
        "selfservice.run.requested",
        "selfservice.run.approved",
        "selfservice.run.rejected",
        "selfservice.run.retried",
        "selfservice.run.started",
        "selfservice.run.succeeded",
        "selfservice.run.failed",
        "selfservice.template.updated",
        "team.updated",
        "user.updated",
        "ticket.created",
        "ticket.done",
        "ticket.imported",
    }
    assert expected <= set(types)
    created = types["catalog.entity_created"]
    assert created["payload_schema"]["required"] == ["ref", "kind", "owner"]
    assert created["payload_schema"]["additionalProperties"] is False
    assert "via" in created["payload_schema"]["properties"]
    # The job kind each in-app subscriber's reaction runs as.
    assert all(isinstance(t["subscribers"], list) for t in types.values())


def test_team_and_user_changes_are_events(db: Database) -> None:
    from lamplighter.core import identity

    lead = make_user(db, email="lead@example.com")
    make_team(db, slug="payments", lead=lead)
    with db.transaction() as session:
        identity.update_user(session=session, actor=SYSTEM, user_id=lead.id, display_name="Li")
        identity.update_team(session=session, actor=SYSTEM, slug="payments", name="Payments!")
    with db.sessionmaker() as session:
        rows = session.execute(sa.select(Event.type, Event.payload).order_by(Event.id)).all()
    by_type = {kind: payload for kind, payload in rows}
    assert by_type["user.updated"] == {
        "id": lead.id,
        "email": "lead@example.com",
        "changed": ["display_name"],
    }
    assert by_type["team.updated"]["name"] == "Payments!"
