"""Template runs executed by the real job worker: order, conditions, approval, compensation,
retry, dry runs, a worker killed mid-step, journaling and secrets — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from lamplighter.core import identity, inbox, jobs
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database, utcnow
from lamplighter.core.errors import Conflict, Forbidden, ValidationFailed
from lamplighter.core.models import AuditEntry, Event, InboxItem, Job, Team, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice import lifecycle, runs, templates
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    registered,
)
from lamplighter.selfservice.models import Run, RunSecret, RunStep
from lamplighter.tickets import service as tickets_service
from lamplighter.tickets.models import RequestType, Ticket
from tests.conftest import SYSTEM, make_team, make_user
from tests.helpers import drain

CREATED: list[str] = []  # ctx.key of every file really created
UNDONE: list[str] = []  # step ids whose files compensation removed, in order
RECORDED: list[str] = []  # texts the record action received
CRASH_AFTER: set[str] = set()  # file names whose creation "kills the worker" once
FLAKY: set[str] = set()  # step keys that fail once with a retryable error


class WorkerKilled(BaseException):
    """Stands for the process dying: nothing after the side effect runs or commits."""


@pytest.fixture(autouse=True)
def _reset_test_actions() -> None:
    for registry in (CREATED, UNDONE, RECORDED, GENERATED):
        registry.clear()
    CRASH_AFTER.clear()
    FLAKY.clear()


class TouchInput(ActionInput):
    directory: str
    name: str


class TouchOutput(ActionOutput):
    path: str


class Touch(Action):
    """Creates a file marked with ctx.key; a second attempt finds it instead of failing."""

    name = "test.touch"
    title = "Create a file"
    Input = TouchInput
    Output = TouchOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: TouchInput) -> TouchOutput:
        path = Path(data.directory) / data.name
        if path.exists():
            if path.read_text() != ctx.key:
                raise ActionError(f"a file named {data.name!r} exists already", field="name")
            ctx.log("found the file an earlier attempt created")
        else:
            path.write_text(ctx.key)
            CREATED.append(ctx.key)
            ctx.log(f"created {data.name}")
        if data.name in CRASH_AFTER:
            CRASH_AFTER.discard(data.name)
            raise WorkerKilled
        if ctx.key in FLAKY:
            FLAKY.discard(ctx.key)
            raise ActionError("the file server is unreachable", retryable=True)
        return TouchOutput(path=str(path))

    def compensate(self, ctx: StepContext, data: TouchInput, output: Any) -> None:
        path = Path(data.directory) / data.name
        if path.exists() and path.read_text() == ctx.key:
            path.unlink()
            UNDONE.append(ctx.step_id)


class BlockedInput(ActionInput):
    blocker: str


class BlockedOutput(ActionOutput):
    ok: bool


class FailWhileBlocked(Action):
    """Fails while the blocker file exists: remove it and the cause is fixed."""

    name = "test.fail_while_blocked"
    title = "Fail on demand"
    Input = BlockedInput
    Output = BlockedOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: BlockedInput) -> BlockedOutput:
        if Path(data.blocker).exists():
            raise ActionError(f"blocked by {Path(data.blocker).name}")
        return BlockedOutput(ok=True)

    def compensate(self, ctx: StepContext, data: BlockedInput, output: Any) -> None:
        return None


class RecordInput(ActionInput):
    text: str
    size: int = 0


class RecordOutput(ActionOutput):
    text: str


class Record(Action):
    name = "test.record"
    title = "Record a text"
    Input = RecordInput
    Output = RecordOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: RecordInput) -> RecordOutput:
        RECORDED.append(data.text)
        return RecordOutput(text=data.text)

    def compensate(self, ctx: StepContext, data: RecordInput, output: Any) -> None:
        return None


class NoInput(ActionInput):
    pass


class PasswordOutput(ActionOutput):
    password: str


class MakePassword(Action):
    name = "test.password"
    title = "Generate a password"
    Input = NoInput
    Output = PasswordOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: NoInput) -> PasswordOutput:
        assert ctx.actor.user_id is not None
        # A row written first: on SQLite the secret then joins this step's transaction.
        inbox.notify(session=ctx.session, user_id=ctx.actor.user_id, title="password generated")
        value = "pw-" + secrets.token_hex(12)
        reference = ctx.secret("db_password", value)
        ctx.log(f"generated {value}")  # careless: the runner must scrub it
        return PasswordOutput(password=reference)

    def compensate(self, ctx: StepContext, data: NoInput, output: Any) -> None:
        return None


class AccountInput(ActionInput):
    directory: str


class AccountOutput(ActionOutput):
    password: str


GENERATED: list[str] = []


class MakeAccount(Action):
    """Like postgres.database: sets a generated password on an outside system, marked with the
    secret's reference, and finds that mark on a second attempt."""

    name = "test.account"
    title = "Create an account"
    Input = AccountInput
    Output = AccountOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: AccountInput) -> AccountOutput:
        mark = Path(data.directory) / f"account-{ctx.key}"
        if mark.exists():
            return AccountOutput(password=mark.read_text())
        value = "pw-" + secrets.token_hex(12)
        GENERATED.append(value)
        reference = ctx.secret("password", value)
        mark.write_text(reference)
        if "account" in CRASH_AFTER:
            CRASH_AFTER.discard("account")
            raise WorkerKilled
        return AccountOutput(password=reference)

    def compensate(self, ctx: StepContext, data: AccountInput, output: Any) -> None:
        (Path(data.directory) / f"account-{ctx.key}").unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _test_actions() -> Iterator[None]:
    """This module's own actions, known to the registry only while its tests run."""
    with registered(Touch, FailWhileBlocked, Record, MakePassword, MakeAccount):
        yield


# -- helpers -----------------------------------------------------------------------------------
def actor_for(db: Database, user: User) -> Actor:
    with db.transaction() as session:
        team_ids = identity.team_ids_of(session=session, user_id=user.id)
    return Actor(kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=team_ids)


def make_template(db: Database, owner: Team, steps: list[dict[str, Any]], **extra: Any) -> str:
    definition: dict[str, Any] = {
        "name": extra.pop("name", "golden"),
        "title": "Golden path",
        "owner": owner.slug,
        "parameters": extra.pop(
            "parameters",
            {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z]+$"},
                    "extra": {"type": "boolean", "default": False},
                },
            },
        ),
        "steps": steps,
        **extra,
    }
    with db.transaction() as session:
        return templates.create(session=session, actor=SYSTEM, definition=definition).name


def touch(step_id: str, directory: Path, name: str, **more: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "action": "test.touch",
        "input": {"directory": str(directory), "name": name},
        **more,
    }


def start(db: Database, actor: Actor, template: str = "golden", **kwargs: Any) -> int:
    with db.transaction() as session:
        return runs.start(
            session=session,
            actor=actor,
            template_name=template,
            parameters=kwargs.pop("parameters", {"name": "pay"}),
            **kwargs,
        ).id


def load(db: Database, run_id: int) -> tuple[Run, list[RunStep]]:
    with db.transaction() as session:
        return runs.get(session=session, run_id=run_id), runs.steps_of(
            session=session, run_id=run_id
        )


@pytest.fixture
def team(db: Database) -> Team:
    return make_team(db, slug="payments", members=[make_user(db)])


@pytest.fixture
def requester(db: Database, team: Team) -> Actor:
    user = make_user(db, email="dev@example.com")
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug=team.slug, email=user.email)
    return actor_for(db, user)


# -- tests -------------------------------------------------------------------------------------
def test_steps_run_in_order_pass_outputs_and_skip_on_a_false_condition(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(
        db,
        team,
        [
            touch("repo", tmp_path, "${{ parameters.name }}.txt"),
            touch("extra", tmp_path, "extra.txt", **{"if": "${{ parameters.extra }}"}),
            {
                "id": "announce",
                "action": "test.record",
                "input": {
                    "text": "${{ run.team }} made ${{ steps.repo.output.path }}",
                    "size": "${{ 2 * 21 }}",
                },
            },
        ],
        request_type="other",
        output={
            "links": [
                {"title": "File", "url": "https://files.example.com${{ steps.repo.output.path }}"}
            ]
        },
    )
    run_id = start(db, requester)
    run, steps = load(db, run_id)
    assert run.status == "queued"
    assert [s.status for s in steps] == ["pending", "pending", "pending"]

    drain(db, settings)

    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert [s.status for s in steps] == ["succeeded", "skipped", "succeeded"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pay.txt"]
    assert [f"payments made {tmp_path / 'pay.txt'}"] == RECORDED
    assert steps[2].input == {"text": f"payments made {tmp_path / 'pay.txt'}", "size": 42}
    assert "created pay.txt" in steps[0].log
    with db.transaction() as session:
        outputs = runs.rendered_outputs(session=session, run=run)
        ticket = session.get(Ticket, run.ticket_id)
        assert ticket is not None
        other = session.scalar(sa.select(RequestType).where(RequestType.slug == "other"))
        assert other is not None
        assert (ticket.status, ticket.resolution, ticket.resolved_by) == (
            "done",
            "self-service",
            f"template-run:{run_id}",
        )
        assert ticket.effort_minutes == other.expected_effort_minutes
        assert ticket.requester_user_id == requester.user_id
        assert ticket.requesting_team_id == team.id
        audited = list(
            session.scalars(
                sa.select(AuditEntry.action)
                .where(AuditEntry.object_type == lifecycle.OBJECT_TYPE)
                .order_by(AuditEntry.id)
            )
        )
        succeeded = session.scalar(
            sa.select(sa.func.count()).where(Event.type == "selfservice.run.succeeded")
        )
    assert outputs["links"] == [
        {"title": "File", "url": f"https://files.example.com{tmp_path / 'pay.txt'}"}
    ]
    assert audited == [
        "selfservice.run.start",
        "selfservice.run.running",
        "selfservice.run.succeeded",
    ]
    assert succeeded == 1


def test_parameters_are_checked_against_the_schema_before_anything_happens(
    db: Database, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(db, team, [touch("repo", tmp_path, "${{ parameters.name }}.txt")])
    with pytest.raises(ValidationFailed) as caught:
        start(db, requester, parameters={"extra": "yes"})
    fields = {e.field: e.reason for e in caught.value.errors}
    assert fields["parameters.name"] == "is required"
    assert fields["parameters.extra"] == "'yes' is not a boolean"
    with pytest.raises(ValidationFailed) as caught:
        start(db, requester, parameters={"name": "Not A Slug"})
    assert caught.value.errors[0].field == "parameters.name"
    with db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Run)) == 0
    run_id = start(db, requester, parameters={"name": "pay"})
    run, _ = load(db, run_id)
    assert run.parameters == {"name": "pay", "extra": False}  # the schema's default applied


def test_viewers_and_teams_not_allowed_cannot_run_a_template(
    db: Database, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(db, team, [touch("repo", tmp_path, "a.txt")], allowed_teams=["payments"])
    viewer = make_user(db, role="viewer")
    other_team_member = make_user(db)
    make_team(db, slug="search", members=[other_team_member])
    with pytest.raises(Forbidden):
        start(db, actor_for(db, viewer))
    with pytest.raises(Forbidden, match="payments"):
        start(db, actor_for(db, other_team_member))
    run, _ = load(db, start(db, requester))
    assert run.requesting_team_id == team.id


def test_a_team_lead_approval_run_waits_and_only_the_lead_decides(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(db, team, [touch("repo", tmp_path, "a.txt")], approval="team-lead")
    outsider = actor_for(db, make_user(db))
    lead_user_id = team.lead_user_id
    with db.transaction() as session:
        lead = session.get(User, lead_user_id)
        assert lead is not None
    lead_actor = actor_for(db, lead)

    first = start(db, requester)
    run, _ = load(db, first)
    assert run.status == "awaiting_approval"
    with db.transaction() as session:
        notices = session.execute(
            sa.select(InboxItem.title, InboxItem.body).where(InboxItem.user_id == lead_user_id)
        ).all()
    assert [title for title, _ in notices] == ["Approve a run of Golden path?"]
    assert "name='pay'" in notices[0][1]  # the approver sees the parameters
    drain(db, settings)
    assert not (tmp_path / "a.txt").exists()  # nothing runs before the approval

    for wrong in (outsider, requester):
        with db.transaction() as session, pytest.raises(Forbidden):
            runs.approve(session=session, actor=wrong, run_id=first)
    with db.transaction() as session, pytest.raises(ValidationFailed):
        runs.reject(session=session, actor=lead_actor, run_id=first, reason="  ")
    with db.transaction() as session:
        runs.reject(session=session, actor=lead_actor, run_id=first, reason="use the shared one")
    drain(db, settings)
    run, steps = load(db, first)
    assert (run.status, run.decision_reason, run.approver_user_id) == (
        "rejected",
        "use the shared one",
        lead_user_id,
    )
    assert steps[0].status == "pending"
    assert not (tmp_path / "a.txt").exists()
    with db.transaction() as session, pytest.raises(Conflict):
        runs.approve(session=session, actor=lead_actor, run_id=first)
    with db.transaction() as session:
        waiting = runs.list_(session=session, status="rejected")
        assert [r.id for r in waiting] == [first]

    second = start(db, requester)
    with db.transaction() as session:
        runs.approve(session=session, actor=lead_actor, run_id=second, reason="fine")
    run, _ = load(db, second)
    assert run.status == "queued"
    drain(db, settings)
    run, _ = load(db, second)
    assert run.status == "succeeded"
    assert (tmp_path / "a.txt").exists()


def test_an_sre_approval_notifies_every_sre(
    db: Database, team: Team, requester: Actor, tmp_path: Path
) -> None:
    sres = [make_user(db, role="sre"), make_user(db, role="sre")]
    make_template(db, team, [touch("repo", tmp_path, "a.txt")], approval="sre")
    run_id = start(db, requester)
    with db.transaction() as session:
        notified = set(session.scalars(sa.select(InboxItem.user_id)))
    assert notified == {s.id for s in sres}
    with db.transaction() as session, pytest.raises(Forbidden):
        runs.approve(session=session, actor=actor_for(db, make_user(db)), run_id=run_id)
    with db.transaction() as session:
        run = runs.approve(session=session, actor=actor_for(db, sres[1]), run_id=run_id)
        assert run.status == "queued"


def failing_template(db: Database, team: Team, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    blocker = tmp_path / "blocker"
    blocker.write_text("the quota is exhausted")
    make_template(
        db,
        team,
        [
            touch("first", work, "first.txt"),
            touch("second", work, "second.txt"),
            {"id": "last", "action": "test.fail_while_blocked", "input": {"blocker": str(blocker)}},
        ],
    )
    return blocker


def test_a_failure_in_the_last_step_undoes_every_earlier_step_in_reverse(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    failing_template(db, team, tmp_path)
    run_id = start(db, requester)
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "failed"
    assert run.failed_step == "last"
    assert run.error == "step last (test.fail_while_blocked) failed: blocked by blocker"
    assert [s.status for s in steps] == ["compensated", "compensated", "failed"]
    assert steps[2].error == "blocked by blocker"
    assert UNDONE == ["second", "first"]
    assert list((tmp_path / "work").iterdir()) == []  # nothing left behind
    with db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 0
        failed = session.scalars(
            sa.select(Event.payload).where(Event.type == "selfservice.run.failed")
        ).all()
    assert [e["failed_step"] for e in failed] == ["last"]


def test_a_failed_run_retried_after_the_fix_finishes_without_duplicates(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    blocker = failing_template(db, team, tmp_path)
    run_id = start(db, requester)
    drain(db, settings)
    with db.transaction() as session, pytest.raises(Forbidden):
        runs.retry(session=session, actor=actor_for(db, make_user(db)), run_id=run_id)

    blocker.unlink()  # the cause is fixed
    with db.transaction() as session:
        runs.retry(session=session, actor=requester, run_id=run_id)
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert (run.error, run.failed_step) == (None, None)
    assert [s.status for s in steps] == ["succeeded"] * 3
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["first.txt", "second.txt"]
    with db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 1
        with pytest.raises(Conflict):
            runs.retry(session=session, actor=requester, run_id=run_id)


def test_a_dry_run_renders_every_input_and_acts_on_nothing(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(
        db,
        team,
        [
            touch("repo", tmp_path, "${{ parameters.name }}.txt"),
            {
                "id": "announce",
                "action": "test.record",
                "input": {"text": "see ${{ steps.repo.output.path }}"},
            },
        ],
        approval="sre",
    )
    run_id = start(db, requester, dry_run=True)
    run, _ = load(db, run_id)
    assert run.status == "queued"  # a dry run changes nothing, so it needs no approval
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded"
    assert run.ticket_id is None
    assert steps[0].input == {"directory": str(tmp_path), "name": "pay.txt"}
    assert steps[1].input == {"text": "see <output of step repo>"}
    assert [s.status for s in steps] == ["skipped", "skipped"]
    assert list(tmp_path.iterdir()) == [] and CREATED == [] and RECORDED == []


def test_a_missing_step_output_fails_the_run_naming_the_step_and_expression(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(
        db,
        team,
        [
            touch("repo", tmp_path, "a.txt"),
            {
                "id": "use",
                "action": "test.record",
                "input": {"text": "${{ steps.repo.output.url }}"},
            },
        ],
    )
    run_id = start(db, requester)
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "failed"
    assert "steps.use.input.text" in (run.error or "")
    assert "${{ steps.repo.output.url }}" in (run.error or "")
    assert "the output of step 'repo' has no field 'url' (fields: path)" in (run.error or "")
    assert [s.status for s in steps] == ["compensated", "failed"]
    assert not (tmp_path / "a.txt").exists()


def test_a_worker_killed_mid_step_does_not_duplicate_the_resource(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(db, team, [touch("repo", tmp_path, "a.txt"), touch("more", tmp_path, "b.txt")])
    run_id = start(db, requester)
    CRASH_AFTER.add("a.txt")
    with pytest.raises(WorkerKilled):
        jobs.Worker(db, settings).run_once()
    run, steps = load(db, run_id)
    assert run.status == "running"
    assert steps[0].status == "running"  # its progress was committed before the action ran
    assert (tmp_path / "a.txt").exists()

    with db.transaction() as session:  # the dead worker's lease runs out
        session.execute(sa.update(Job).values(lease_expires_at=utcnow() - dt.timedelta(seconds=1)))
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert [s.status for s in steps] == ["succeeded", "succeeded"]
    assert [f"run-{run_id}-repo", f"run-{run_id}-more"] == CREATED
    assert "found the file an earlier attempt created" in steps[0].log


def test_a_retryable_error_is_tried_again_before_anything_is_undone(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(db, team, [touch("repo", tmp_path, "a.txt")])
    run_id = start(db, requester)
    FLAKY.add(f"run-{run_id}-repo")
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert "will retry: the file server is unreachable" in steps[0].log
    assert [f"run-{run_id}-repo"] == CREATED


def test_secrets_are_shown_once_to_the_requester_and_written_nowhere_else(
    db: Database, settings: Settings, team: Team, requester: Actor
) -> None:
    make_template(db, team, [{"id": "db", "action": "test.password", "input": {}}])
    run_id = start(db, requester)
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert steps[0].output == {"password": "secret:db_password"}
    with db.transaction() as session:
        titles = session.scalars(
            sa.select(InboxItem.title).where(InboxItem.user_id == requester.user_id)
        ).all()
    assert "password generated" in titles
    box = SecretBox(settings.effective_secret_key())

    with db.transaction() as session, pytest.raises(Forbidden):
        runs.reveal_secrets(
            session=session, actor=actor_for(db, make_user(db)), run_id=run_id, box=box
        )
    with db.transaction() as session:
        shown = runs.reveal_secrets(session=session, actor=requester, run_id=run_id, box=box)
    password = shown["db_password"]
    assert password.startswith("pw-")
    with db.transaction() as session, pytest.raises(Conflict):
        runs.reveal_secrets(session=session, actor=requester, run_id=run_id, box=box)

    with db.transaction() as session:
        stored = session.scalars(sa.select(RunSecret.ciphertext)).all()
        diffs = session.scalars(sa.select(AuditEntry.diff)).all()
        payloads = session.scalars(sa.select(Event.payload)).all()
        step_rows = runs.steps_of(session=session, run_id=run_id)
    assert len(stored) == 1 and password not in stored[0]
    assert password not in orjson.dumps(diffs).decode()
    assert password not in orjson.dumps(payloads).decode()
    for step in step_rows:
        assert (
            password not in orjson.dumps([step.input, step.output, step.log, step.error]).decode()
        )
    assert "generated [secret]" in step_rows[0].log


def test_a_template_with_runs_cannot_be_deleted(
    db: Database, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(db, team, [touch("repo", tmp_path, "a.txt")])
    start(db, requester)
    with db.transaction() as session, pytest.raises(Conflict):
        templates.delete(session=session, actor=SYSTEM, name="golden")


def test_a_run_whose_job_runs_out_of_tries_ends_failed_and_can_be_retried(
    db: Database,
    settings: Settings,
    team: Team,
    requester: Actor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_template(db, team, [touch("repo", tmp_path, "a.txt")])
    run_id = start(db, requester)
    with db.transaction() as session:
        session.execute(sa.update(Job).values(max_attempts=1))

    def journal_down(**_: Any) -> Ticket:
        raise RuntimeError("the journal is unavailable")

    monkeypatch.setattr(tickets_service, "record_resolved_work", journal_down)
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "failed"  # not "running" forever
    assert "the journal is unavailable" in (run.error or "")
    assert [s.status for s in steps] == ["succeeded"]
    assert (tmp_path / "a.txt").exists()  # kept, so a retry goes on from here

    monkeypatch.undo()
    with db.transaction() as session:
        runs.retry(session=session, actor=requester, run_id=run_id)
    drain(db, settings)
    run, _ = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert run.ticket_id is not None
    assert [f"run-{run_id}-repo"] == CREATED


def test_a_secret_set_before_the_worker_died_can_still_be_shown(
    db: Database, settings: Settings, team: Team, requester: Actor, tmp_path: Path
) -> None:
    make_template(
        db,
        team,
        [
            touch("repo", tmp_path, "a.txt"),
            {"id": "account", "action": "test.account", "input": {"directory": str(tmp_path)}},
        ],
    )
    run_id = start(db, requester)
    CRASH_AFTER.add("account")
    with pytest.raises(WorkerKilled):
        jobs.Worker(db, settings).run_once()
    with db.transaction() as session:
        session.execute(sa.update(Job).values(lease_expires_at=utcnow() - dt.timedelta(seconds=1)))
    drain(db, settings)
    run, steps = load(db, run_id)
    assert run.status == "succeeded", run.error
    assert steps[1].output == {"password": "secret:password"}
    assert len(GENERATED) == 1  # the second attempt found the account
    with db.transaction() as session:
        shown = runs.reveal_secrets(
            session=session,
            actor=requester,
            run_id=run_id,
            box=SecretBox(settings.effective_secret_key()),
        )
    assert shown == {"password": GENERATED[0]}
