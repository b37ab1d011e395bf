"""The ``selfservice.run`` job: a run's steps in order, compensation, and the end of a run.

Each step's progress is committed in a transaction of its own so the run page shows it while
the run goes on:

1. the step is marked ``running`` with its rendered input (committed);
2. the action runs with a session of its own; its rows, the step's output and status commit
   together. A worker killed between the action's side effect and that commit leaves the step
   ``running``; the job runs again when its lease expires, and the action, idempotent under
   ``ctx.key``, finds what the first attempt created.

When a step fails, it and every completed step before it are compensated in reverse order, each
result recorded; the run ends ``failed`` naming the step, and can be retried from there. When
the run succeeds, the template's outputs are rendered once and stored on the run.

Secrets stay in the action's hands: the input an action receives has the secret parameters'
values, while the step input, output, log and error stored for the run page, and the run's
error, have every secret value (secret parameters and ``ctx.secret`` values alike) replaced by
``[secret]``. Compensation renders the step's input again rather than reading the masked copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from lamplighter.core import jobs, people
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import SQLiteWriteGate, utcnow
from lamplighter.core.settings import Settings
from lamplighter.selfservice import expressions, runs
from lamplighter.selfservice.actions import base as actions
from lamplighter.selfservice.lifecycle import announce, snapshot
from lamplighter.selfservice.models import Run, RunSecret, RunStatus, RunStep, StepStatus
from lamplighter.selfservice.runs import (
    RETRYABLE_ATTEMPTS,
    RUN_JOB,
    SECRET_PREFIX,
    log,
    run_facts,
    step_context,
    steps_of,
)
from lamplighter.tickets import service as tickets
from lamplighter.tickets.models import RequestType


class _RetryStep(Exception):
    """A provider outage: the job runs again later and the step is attempted once more."""


class _StepFailed(Exception):
    def __init__(self, step: RunStep, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


class _Runner:
    """Executes one run; every state change is its own committed transaction."""

    def __init__(self, bind: Engine | Connection, settings: Settings, run_id: int, attempt: int):
        self.bind = bind
        self.settings = settings
        self.run_id = run_id
        self.attempt = attempt
        self.box = SecretBox(settings.effective_secret_key())
        self.actor = Actor.system(f"template-run:{run_id}")
        self.secret_values: list[str] = []
        self.facts: dict[str, Any] = {}
        self.parameters: dict[str, Any] | None = None  # with the secret ones, for actions only
        self.action_inputs: dict[int, dict[str, Any]] = {}  # by RunStep.id, unmasked
        self.run: Run | None = None
        self.current: RunStep | None = None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with Session(self.bind, expire_on_commit=False) as session, session.begin():
            yield session

    def scrub(self, text: str) -> str:
        """``text`` with every secret value known to this run replaced by ``[secret]``."""
        return runs.scrub_text(text, self.secret_values)

    def scrub_value(self, value: Any) -> Any:
        return runs.scrub_value(value, self.secret_values)

    # -- state --------------------------------------------------------------------------------
    def claim(self) -> Run | None:
        with self.transaction() as session:
            run = session.scalar(sa.select(Run).where(Run.id == self.run_id).with_for_update())
            if run is None or run.status not in (RunStatus.QUEUED.value, RunStatus.RUNNING.value):
                return None  # stale: rejected, finished, or retried by someone else
            if run.status == RunStatus.QUEUED.value:
                before = snapshot(run)
                run.status = RunStatus.RUNNING.value
                run.started_at = run.started_at or utcnow()
                announce(session, self.actor, run, "started", before)
            return run

    def requester(self, session: Session, run: Run) -> Actor:
        if run.requester_user_id is None:
            return self.actor
        actor = people.actor_for_user(session=session, user_id=run.requester_user_id)
        return actor if actor is not None else self.actor

    def step_context(self, session: Session, run: Run, step: RunStep) -> actions.StepContext:
        return actions.StepContext(
            session=session,
            settings=self.settings,
            box=self.box,
            actor=self.requester(session, run),
            run_id=run.id,
            step_id=step.step_id,
            requesting_team_id=run.requesting_team_id,
            dry_run=run.dry_run,
            secret_sink=self.secret_sink(session, run.id),
        )

    def secret_sink(self, session: Session, run_id: int) -> Callable[[str, str], str]:
        """Store a step's secret. It is committed at once, in a transaction of its own, so a
        worker killed before the step's commit does not lose a password already set on the
        outside system (the next attempt finds the resource and returns the same reference).
        Only when the step's SQLite connection already holds the single write lock does the
        secret go into the step's transaction instead: a second writer would wait on it."""

        def sink(name: str, value: str) -> str:
            self.secret_values.append(value)
            if _holds_sqlite_write_lock(session):
                _store_secret(session, self.box, run_id, name, value)
            else:
                with self.transaction() as own:
                    _store_secret(own, self.box, run_id, name, value)
            return SECRET_PREFIX + name

        return sink

    def update_step(self, step_pk: int, *, log: list[str] | None = None, **values: Any) -> None:
        """Commit a change to one step; ``log`` lines are appended to what earlier attempts wrote."""
        with self.transaction() as session:
            step = session.get(RunStep, step_pk)
            assert step is not None
            for key, value in values.items():
                setattr(step, key, value)
            if log:
                step.log = _joined(step.log, self.scrub("\n".join(log)))

    # -- execution ----------------------------------------------------------------------------
    def execute(self) -> None:
        run = self.claim()
        if run is None:
            return
        self.run = run
        with self.transaction() as session:
            steps = steps_of(session=session, run_id=run.id)
            self.facts = run_facts(session, run)
            self.parameters, known = runs.parameters_with_secrets(
                session=session, run=run, box=self.box
            )
            self.secret_values.extend(known)
        try:
            for step in steps:
                if step.status in (StepStatus.SUCCEEDED.value, StepStatus.SKIPPED.value):
                    continue
                if step.status == StepStatus.WAITING.value:  # an attempt stopped before the run
                    self.await_decision(run, step, "its decision")  # was marked waiting
                    return
                self.current = step
                waiting_for = self.execute_step(run, step, steps)
                if waiting_for is not None:
                    self.current = None
                    self.await_decision(run, step, waiting_for)
                    return
            self.current = None
        except _StepFailed as failure:
            self.fail(run, failure)
            return
        self.succeed(run)

    def execute_step(self, run: Run, step: RunStep, steps: list[RunStep]) -> str | None:
        """Run one step; returns what the run now waits for (a decision), if anything."""
        spec = run.spec["steps"][step.index]
        where = f"steps.{step.step_id}"
        context = step_context(run, steps, self.facts, self.parameters)
        try:
            if "if" in spec and not expressions.condition(spec["if"], context, where=f"{where}.if"):
                step.status = StepStatus.SKIPPED.value
                self.update_step(
                    step.id,
                    status=step.status,
                    log=["skipped: its condition is false"],
                    finished_at=utcnow(),
                )
                return None
            rendered = expressions.render(spec.get("input") or {}, context, where=f"{where}.input")
        except expressions.ExpressionError as exc:
            raise self.step_failed(step, exc.detail) from None
        action_type = actions.ACTIONS.get(step.action)
        if action_type is None:
            raise self.step_failed(step, f"unknown action {step.action!r}")
        try:
            data = action_type.Input.model_validate(rendered)
        except pydantic.ValidationError as exc:
            if run.dry_run and "<output of step " in str(rendered):
                data = None  # a placeholder where a number is expected: known only when run
            else:
                raise self.step_failed(step, _input_problem(where, exc)) from None
        self.action_inputs[step.id] = rendered
        shown = self.scrub_value(rendered)
        if run.dry_run:
            step.input = shown
            self.update_step(step.id, input=shown, started_at=utcnow())
            problem = self.dry_check(run, step, action_type, rendered, data)
            if problem is not None:
                raise self.step_failed(step, problem)
            step.status = StepStatus.SKIPPED.value
            self.update_step(
                step.id,
                status=step.status,
                log=["dry run: the input is valid and the step can run here; nothing was done"],
                finished_at=utcnow(),
            )
            return None
        step.input = shown
        self.update_step(
            step.id,
            status=StepStatus.RUNNING.value,
            input=shown,
            error=None,
            started_at=utcnow(),
            finished_at=None,
        )
        logs: list[str] = []
        try:
            with self.transaction() as session:
                ctx = self.step_context(session, run, step)
                logs = ctx.logs
                output = action_type().run(ctx, data)
                if not isinstance(output, action_type.Output):
                    output = action_type.Output.model_validate(output)
                dumped = self.scrub_value(output.model_dump(mode="json"))
                # A step that waits for a decision says so in the same commit as its output.
                waiting_for = action_type().awaiting(output)
                if waiting_for is not None:
                    logs.append(f"waiting for {waiting_for}")
                row = session.get(RunStep, step.id)
                assert row is not None
                row.status = (
                    StepStatus.SUCCEEDED.value if waiting_for is None else StepStatus.WAITING.value
                )
                row.output = dumped
                row.log = _joined(row.log, self.scrub("\n".join(logs)))
                row.error = None
                row.finished_at = utcnow()
        except actions.ActionError as exc:
            if exc.retryable and self.attempt < RETRYABLE_ATTEMPTS:
                self.update_step(
                    step.id,
                    status=StepStatus.PENDING.value,
                    log=[*logs, f"will retry: {exc}"],
                )
                # A plain exception: the job is tried again with backoff, counting the attempt.
                raise _RetryStep(self.scrub(str(exc))) from None
            self.update_step(step.id, log=logs)
            raise self.step_failed(step, str(exc)) from None
        except Exception as exc:
            self.update_step(step.id, log=logs)
            raise self.step_failed(step, f"{type(exc).__name__}: {exc}") from None
        step.status = row.status
        step.output = dumped
        return waiting_for

    def dry_check(
        self,
        run: Run,
        step: RunStep,
        action_type: type[actions.Action],
        rendered: Any,
        data: Any,
    ) -> str | None:
        """What stops this step in a real run, as far as a dry run can tell without doing
        anything: the installation cannot run the action (no server configured, or it does
        not answer), or the input does not fit the catalog (a name taken, no such entity)."""
        unavailable = action_type.preflight(
            self.settings, rendered if isinstance(rendered, dict) else None
        )
        if unavailable is not None:
            return f"this installation cannot run {step.action}: {unavailable}"
        if data is None:
            return None
        try:
            with self.transaction() as session:
                ctx = self.step_context(session, run, step)
                action = action_type()
                action.reachable(ctx, data)
                action.check(ctx, data)
        except actions.ActionError as exc:
            return str(exc)
        except Exception as exc:  # a check must not crash the dry run
            return f"{type(exc).__name__}: {exc}"
        return None

    def await_decision(self, run: Run, step: RunStep, waiting_for: str) -> None:
        with self.transaction() as session:
            row = session.get(Run, run.id)
            assert row is not None
            before = snapshot(row)
            row.status = RunStatus.AWAITING_DECISION.value
            announce(
                session,
                self.actor,
                row,
                "awaiting_decision",
                before,
                body=f"Step {step.step_id} waits for {waiting_for}; the run goes on once it is "
                "approved.",
            )

    def step_failed(self, step: RunStep, message: str) -> _StepFailed:
        message = self.scrub(message)
        step.status = StepStatus.FAILED.value
        self.update_step(step.id, status=step.status, error=message, finished_at=utcnow())
        return _StepFailed(step, message)

    def compensate(self, run: Run, step: RunStep, output: Any) -> bool:
        """Undo one step; True when it is undone (or there was nothing to undo)."""
        action_type = actions.ACTIONS.get(step.action)
        logs: list[str] = []
        try:
            if action_type is None:
                raise actions.ActionError(f"unknown action {step.action!r}")
            data = action_type.Input.model_validate(self.action_input(run, step))
            with self.transaction() as session:
                ctx = self.step_context(session, run, step)
                logs = ctx.logs
                action_type().compensate(ctx, data, output)
        except Exception as exc:
            message = self.scrub(str(exc) if isinstance(exc, actions.ActionError) else repr(exc))
            self.update_step(
                step.id,
                status=StepStatus.COMPENSATION_FAILED.value,
                log=[*logs, f"undo failed: {message}"],
                error=(step.error + "; " if step.error else "") + f"undo failed: {message}",
            )
            return False
        return True

    def action_input(self, run: Run, step: RunStep) -> dict[str, Any]:
        """The input the action received: kept from this attempt, or rendered again (the
        stored one has its secrets masked) for a step an earlier attempt ran."""
        if step.id in self.action_inputs:
            return self.action_inputs[step.id]
        if not self.secret_values:
            return step.input or {}
        with self.transaction() as session:
            steps = steps_of(session=session, run_id=run.id)
        context = step_context(run, steps, self.facts, self.parameters)
        spec = run.spec["steps"][step.index]
        where = f"steps.{step.step_id}.input"
        try:
            rendered = expressions.render(spec.get("input") or {}, context, where=where)
        except expressions.ExpressionError:
            return step.input or {}
        return rendered if isinstance(rendered, dict) else {}

    def give_up(self, exc: Exception) -> None:
        """The job is out of tries for a reason outside any step (the database, the journal):
        end the run failed instead of running forever. What succeeded is kept, not undone, so
        a retry after the fix goes on from where the run stopped."""
        if self.run is None:
            return
        message = self.scrub(f"the run stopped: {type(exc).__name__}: {exc}")
        try:
            if self.current is not None:
                self.update_step(
                    self.current.id,
                    status=StepStatus.FAILED.value,
                    error=message,
                    finished_at=utcnow(),
                )
            with self.transaction() as session:
                row = session.get(Run, self.run.id)
                if row is None or row.status != RunStatus.RUNNING.value:
                    return
                before = snapshot(row)
                row.status = RunStatus.FAILED.value
                row.error = message + " (nothing was undone; retry the run once it is fixed)"
                row.failed_step = self.current.step_id if self.current is not None else None
                row.finished_at = utcnow()
                announce(session, self.actor, row, "failed", before, body=row.error)
        except Exception:
            log.exception("template run %s could not be marked failed", self.run.id)

    def fail(self, run: Run, failure: _StepFailed) -> None:
        with self.transaction() as session:
            steps = steps_of(session=session, run_id=run.id)
        by_index = {s.index: s for s in steps}
        failed_index = failure.step.index
        undo_failed: list[str] = []
        if run.dry_run:  # a dry run did nothing: there is nothing to undo
            by_index = {}
        # The failed step may have done part of its work: undo whatever exists under ctx.key.
        failed_row = by_index.get(failed_index)
        if (
            failed_row is not None
            and failed_row.input is not None
            and not self.compensate(run, failed_row, None)
        ):
            undo_failed.append(failed_row.step_id)
        for index in range(failed_index - 1, -1, -1):
            if index not in by_index:
                continue
            step = by_index[index]
            if step.status != StepStatus.SUCCEEDED.value:
                continue
            if self.compensate(run, step, step.output):
                self.update_step(
                    step.id,
                    status=StepStatus.COMPENSATED.value,
                    log=["undone"],
                    finished_at=utcnow(),
                )
            else:
                undo_failed.append(step.step_id)
        error = f"step {failure.step.step_id} ({failure.step.action}) failed: {failure.message}"
        if undo_failed:
            error += "; could not undo: " + ", ".join(undo_failed) + " (clean these up by hand)"
        with self.transaction() as session:
            row = session.get(Run, run.id)
            assert row is not None
            before = snapshot(row)
            row.status = RunStatus.FAILED.value
            row.error = error
            row.failed_step = failure.step.step_id
            row.finished_at = utcnow()
            announce(session, self.actor, row, "failed", before, body=error)

    def succeed(self, run: Run) -> None:
        with self.transaction() as session:
            row = session.get(Run, run.id)
            assert row is not None
            before = snapshot(row)
            if not row.dry_run:
                title = str(row.spec.get("title") or row.spec.get("name"))
                ticket = tickets.record_resolved_work(
                    session=session,
                    actor=self.actor,
                    type_slug=_journal_type(session, row.spec.get("request_type")),
                    title=f"{title} (template run {row.id})",
                    resolution="self-service",
                    resolved_by=f"template-run:{row.id}",
                    requester_user_id=row.requester_user_id,
                    requesting_team_id=row.requesting_team_id,
                )
                row.ticket_id = ticket.id
            row.status = RunStatus.SUCCEEDED.value
            row.error = None
            row.failed_step = None
            row.finished_at = utcnow()
            # Rendered once, here: reading a run never evaluates its template's expressions.
            row.outputs = self.scrub_value(
                runs.render_outputs(
                    run=row, steps=steps_of(session=session, run_id=row.id), facts=self.facts
                )
            )
            announce(session, self.actor, row, "succeeded", before)


def _store_secret(session: Session, box: SecretBox, run_id: int, name: str, value: str) -> None:
    secret = session.scalar(
        sa.select(RunSecret).where(RunSecret.run_id == run_id, RunSecret.name == name)
    )
    if secret is None:
        session.add(
            RunSecret(run_id=run_id, name=name, ciphertext=box.encrypt(value), created_at=utcnow())
        )
    else:  # a new value from a later attempt: shown again, once
        secret.ciphertext = box.encrypt(value)
        secret.revealed_at = None
    session.flush()


def _holds_sqlite_write_lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "sqlite" or not session.in_transaction():
        return False
    return SQLiteWriteGate.KEY in session.connection().info


def _journal_type(session: Session, slug: str | None) -> str:
    """The template's request type, or "other" when it was removed since the template was saved."""
    if slug and session.scalar(sa.select(RequestType.id).where(RequestType.slug == slug)):
        return slug
    return "other"


def _joined(earlier: str | None, more: str) -> str:
    return "\n".join(part for part in (earlier, more) if part)


def _input_problem(where: str, exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}.input.{location}: {error['msg']}")
    return "; ".join(parts)


@jobs.handler(RUN_JOB)
def run_job(ctx: jobs.JobContext) -> None:
    """Execute a run's steps; each step commits on its own, outside the job's transaction."""
    # The job's own session writes only the "done" mark after this returns; touching it here
    # would hold SQLite's single write lock against the step transactions below.
    runner = _Runner(ctx.session.get_bind(), ctx.settings, int(ctx.payload["run_id"]), ctx.attempt)
    try:
        runner.execute()
    except _RetryStep:
        raise
    except Exception as exc:
        if ctx.attempt >= ctx.max_attempts:
            runner.give_up(exc)
        raise
