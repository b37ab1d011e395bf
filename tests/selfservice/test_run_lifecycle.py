"""A run's life in one module (selfservice/lifecycle.py): every status change is audited, told as
a typed event and, where the requester waits, put in their inbox — the give-up path too; and a
run slower than the job lease is never run twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.core import identity, jobs
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry, Event, InboxItem, Job, Team
from lamplighter.core.settings import Settings
from lamplighter.selfservice import runs, templates
from lamplighter.selfservice.actions.base import (
    Action,
    ActionInput,
    ActionOutput,
    StepContext,
    registered,
)
from lamplighter.selfservice.models import Run
from lamplighter.tickets import service as tickets_service
from lamplighter.tickets.models import Ticket
from tests.conftest import SYSTEM, make_team, make_user
from tests.helpers import drain

SLOW_CALLS: list[str] = []


class SlowInput(ActionInput):
    seconds: float


class SlowOutput(ActionOutput):
    slept: float


class Slow(Action):
    """A step that takes longer than the job's lease (a big database restore, say)."""

    name = "test.slow"
    title = "Take a while"
    Input = SlowInput
    Output = SlowOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: SlowInput) -> SlowOutput:
        SLOW_CALLS.append(ctx.key)
        time.sleep(data.seconds)
        return SlowOutput(slept=data.seconds)

    def compensate(self, ctx: StepContext, data: SlowInput, output: Any) -> None:
        return None


@pytest.fixture(autouse=True)
def _slow_action() -> Iterator[None]:
    SLOW_CALLS.clear()
    with registered(Slow):
        yield


@pytest.fixture
def team(db: Database) -> Team:
    return make_team(db, slug="payments", members=[make_user(db)])


@pytest.fixture
def requester(db: Database, team: Team) -> Actor:
    user = make_user(db, email="dev@example.com")
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug=team.slug, email=user.email)
        team_ids = identity.team_ids_of(session=session, user_id=user.id)
    return Actor(kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=team_ids)


def make_template(db: Database, team: Team, seconds: float, **extra: Any) -> None:
    definition = {
        "name": "restore",
        "title": "Restore a database",
        "owner": team.slug,
        "steps": [{"id": "restore", "action": "test.slow", "input": {"seconds": seconds}}],
        **extra,
    }
    with db.transaction() as session:
        templates.create(session=session, actor=SYSTEM, definition=definition)


def start(db: Database, actor: Actor) -> int:
    with db.transaction() as session:
        return runs.start(session=session, actor=actor, template_name="restore", parameters={}).id


def story(db: Database, run_id: int) -> tuple[list[str], list[str], list[str]]:
    """The run's event types, audit actions and its requester's inbox titles, in order."""
    subject = f"template_run:{run_id}"
    with db.sessionmaker() as session:
        kinds = list(
            session.scalars(
                sa.select(Event.type).where(Event.subject == subject).order_by(Event.id)
            )
        )
        actions = list(
            session.scalars(
                sa.select(AuditEntry.action)
                .where(
                    AuditEntry.object_type == "selfservice_run", AuditEntry.object_id == str(run_id)
                )
                .order_by(AuditEntry.id)
            )
        )
        inbox = list(session.scalars(sa.select(InboxItem.title).order_by(InboxItem.id)))
    return kinds, actions, inbox


def test_an_approved_run_tells_each_step_of_its_life(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(db, team, 0, approval="sre")
    sre = make_user(db, role="sre")
    run_id = start(db, requester)
    with db.transaction() as session:
        runs.approve(
            session=session,
            actor=Actor(kind="user", label=sre.email, user_id=sre.id, role="sre"),
            run_id=run_id,
        )
    drain(db, settings)
    kinds, actions, inbox = story(db, run_id)
    assert kinds == [
        "selfservice.run.requested",
        "selfservice.run.approved",
        "selfservice.run.started",
        "selfservice.run.succeeded",
    ]
    assert actions == [f"selfservice.run.{a}" for a in ("start", "approve", "running", "succeeded")]
    assert f"Your run {run_id} of Restore a database was approved" in inbox
    assert f"Your run {run_id} of Restore a database succeeded" in inbox
    with db.sessionmaker() as session:
        succeeded = session.scalars(
            sa.select(Event.payload).where(Event.type == "selfservice.run.succeeded")
        ).one()
        run = session.get(Run, run_id)
        assert run is not None
    assert succeeded["ticket_id"] == run.ticket_id is not None
    assert (succeeded["template"], succeeded["status"]) == ("restore", "succeeded")


def test_a_rejected_run_says_why_in_its_event_and_the_inbox(
    db: Database, team: Team, requester: Actor
) -> None:
    make_template(db, team, 0, approval="sre")
    sre = make_user(db, role="sre")
    run_id = start(db, requester)
    with db.transaction() as session:
        runs.reject(
            session=session,
            actor=Actor(kind="user", label=sre.email, user_id=sre.id, role="sre"),
            run_id=run_id,
            reason="use the staging copy",
        )
    kinds, _, inbox = story(db, run_id)
    assert kinds == ["selfservice.run.requested", "selfservice.run.rejected"]
    assert f"Your run {run_id} of Restore a database was rejected" in inbox
    with db.sessionmaker() as session:
        payload = session.scalars(
            sa.select(Event.payload).where(Event.type == "selfservice.run.rejected")
        ).one()
    assert payload["reason"] == "use the staging copy"


def test_giving_up_tells_the_requester_like_any_failure_and_a_retry_is_an_event(
    db: Database,
    settings: Settings,
    team: Team,
    requester: Actor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_template(db, team, 0)
    run_id = start(db, requester)
    with db.transaction() as session:
        session.execute(sa.update(Job).values(max_attempts=1))

    def journal_down(**_: Any) -> Ticket:
        raise RuntimeError("the journal is unavailable")

    monkeypatch.setattr(tickets_service, "record_resolved_work", journal_down)
    drain(db, settings)
    kinds, actions, inbox = story(db, run_id)
    assert kinds[-1] == "selfservice.run.failed"
    assert actions[-1] == "selfservice.run.failed"
    assert (
        f"Your run {run_id} of Restore a database failed" in inbox
    )  # before, the give-up path told no one

    monkeypatch.undo()
    with db.transaction() as session:
        runs.retry(session=session, actor=requester, run_id=run_id)
        runs_again = session.scalar(
            sa.select(sa.func.count()).select_from(Job).where(Job.kind == runs.RUN_JOB)
        )
    assert runs_again == 2
    drain(db, settings)
    kinds, _, _ = story(db, run_id)
    assert kinds[-3:] == [
        "selfservice.run.retried",
        "selfservice.run.started",
        "selfservice.run.succeeded",
    ]


def test_a_replayed_start_or_approval_queues_the_run_once(
    db: Database, team: Team, requester: Actor
) -> None:
    make_template(db, team, 0)
    run_id = start(db, requester)
    with db.transaction() as session:
        run = runs.get(session=session, run_id=run_id)
        runs.enqueue_run(session, run, "start")  # the same reason again: no second job
        count = session.scalar(sa.select(sa.func.count()).select_from(Job))
    assert count == 1


def test_a_run_slower_than_the_job_lease_runs_once_while_another_worker_watches(
    db: Database, settings: Settings, team: Team, requester: Actor
) -> None:
    settings = settings.model_copy(update={"job_lease_s": 0.6})
    make_template(db, team, 2.0)  # more than three leases long
    run_id = start(db, requester)
    busy = jobs.Worker(db, settings, name="busy")
    watcher = jobs.Worker(db, settings, name="watcher")
    (claimed,) = busy.claim(10)  # the busy worker has it first
    thread = threading.Thread(target=busy.run_one, args=(claimed,))
    thread.start()
    claimed_by_watcher = 0
    while thread.is_alive():  # the other worker requeues expired leases and claims all along
        claimed_by_watcher += watcher.run_once()
        time.sleep(0.05)
    thread.join()
    drain(db, settings, worker=watcher)
    assert claimed_by_watcher == 0
    assert [f"run-{run_id}-restore"] == SLOW_CALLS  # one execution, not two
    with db.sessionmaker() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status == "succeeded", run and run.error
        job = session.scalars(sa.select(Job).where(Job.kind == runs.RUN_JOB)).one()
    assert (job.status, job.attempts, job.locked_by) == ("done", 1, "busy")
