"""Template runs: start, approval, the job that executes steps, compensation, retry and secrets.

A run moves ``awaiting_approval → queued → running → succeeded | failed`` (or ``rejected``).
The ``selfservice.run`` job executes the steps in order. Each step's progress is committed in a
transaction of its own so the run page shows it while the run goes on:

1. the step is marked ``running`` with its rendered input (committed);
2. the action runs with a session of its own; its rows, the step's output and status commit
   together. A worker killed between the action's side effect and that commit leaves the step
   ``running``; the job runs again when its lease expires, and the action, idempotent under
   ``ctx.key``, finds what the first attempt created.

When a step fails, it and every completed step before it are compensated in reverse order, each
result recorded; the run ends ``failed`` naming the step, and can be retried from there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pydantic
import sqlalchemy as sa
from jsonschema import Draft202012Validator
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from lamplighter.core import audit, events, inbox, jobs
from lamplighter.core.authz import PRIVILEGED
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import SQLiteWriteGate, utcnow
from lamplighter.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from lamplighter.core.models import Role, Team, TeamMember, User
from lamplighter.core.pagination import keyset
from lamplighter.core.settings import Settings
from lamplighter.selfservice import templates
from lamplighter.selfservice.actions import base as actions
from lamplighter.selfservice.models import (
    Approval,
    Run,
    RunSecret,
    RunStatus,
    RunStep,
    StepStatus,
    Template,
)
from lamplighter.tickets import service as tickets
from lamplighter.tickets.models import RequestType

log = logging.getLogger("lamplighter.selfservice")
RUN_JOB = "selfservice.run"
OBJECT_TYPE = "selfservice_run"
SECRET_PREFIX = "secret:"  # noqa: S105 - the prefix of a reference, not a secret
RETRYABLE_ATTEMPTS = 3  # job attempts a retryable ActionError gets before compensation
REDACTED = "[secret]"


# -- helpers -----------------------------------------------------------------------------------
def get(*, session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no template run {run_id}")
    return run


def list_(
    *,
    session: Session,
    template_id: int | None = None,
    requester_user_id: int | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Run]:
    """Runs, newest first, keyset-paginated by id."""
    query = sa.select(Run)
    if template_id is not None:
        query = query.where(Run.template_id == template_id)
    if requester_user_id is not None:
        query = query.where(Run.requester_user_id == requester_user_id)
    if status:
        query = query.where(Run.status == status)
    return list(
        session.scalars(keyset(query, Run.id, position=before_id, limit=limit, newest_first=True))
    )


def steps_of(*, session: Session, run_id: int) -> list[RunStep]:
    return list(
        session.scalars(sa.select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.index))
    )


def snapshot(run: Run) -> dict[str, Any]:
    return {
        "template_id": run.template_id,
        "template_version": run.template_version,
        "status": run.status,
        "dry_run": run.dry_run,
        "requester_user_id": run.requester_user_id,
        "requesting_team_id": run.requesting_team_id,
        "approver_user_id": run.approver_user_id,
        "decision_reason": run.decision_reason,
        "error": run.error,
        "failed_step": run.failed_step,
        "ticket_id": run.ticket_id,
    }


def _record(session: Session, actor: Actor, run: Run, action: str, before: dict[str, Any]) -> None:
    """Audit a status change of a run (parameters and secrets are never in the diff)."""
    audit.record(
        session=session,
        actor=actor,
        action=f"selfservice.run.{action}",
        object_type=OBJECT_TYPE,
        object_id=run.id,
        before=before,
        after=snapshot(run),
    )


def _notify_requester(session: Session, run: Run, title: str, body: str = "") -> None:
    if run.requester_user_id is not None:
        inbox.notify(
            session=session,
            user_id=run.requester_user_id,
            title=title,
            body=body,
            link=f"/selfservice/runs/{run.id}",
        )


def apply_defaults(schema: Mapping[str, Any], values: Any) -> Any:
    """Fill in the schema's ``default`` of every missing property, nested objects included."""
    if not isinstance(values, dict):
        return values
    result = dict(values)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            if not isinstance(sub, Mapping):
                continue
            if key not in result and "default" in sub:
                result[key] = sub["default"]
            if key in result:
                result[key] = apply_defaults(sub, result[key])
    return result


def validate_parameters(schema: Mapping[str, Any], parameters: Any) -> dict[str, Any]:
    """Apply defaults and check ``parameters`` against the template's schema; name every problem."""
    if not isinstance(parameters, dict):
        raise ValidationFailed.one("parameters", "an object of parameter values")
    values = apply_defaults(schema, parameters)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems: list[FieldError] = []
    for error in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.path))):
        path = ["parameters", *(str(p) for p in error.absolute_path)]
        if error.validator == "required" and isinstance(error.instance, dict):
            for missing in error.validator_value:
                if missing not in error.instance:
                    problems.append(FieldError(".".join([*path, missing]), "is required"))
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            declared = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            allowed = set(declared)
            for extra in sorted(set(error.instance) - allowed):
                problems.append(FieldError(".".join([*path, extra]), "is not a parameter"))
            continue
        problems.append(FieldError(".".join(path), error.message))
    if problems:
        first = problems[0]
        raise ValidationFailed(f"{first.field}: {first.reason}", errors=problems)
    return dict(values)


def _summary(parameters: Mapping[str, Any]) -> str:
    shown = _redacted_parameters(parameters)
    return ", ".join(f"{key}={value!r}" for key, value in shown.items()) or "no parameters"


def _redacted_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return audit.redact(parameters)


# -- who may do what ---------------------------------------------------------------------------
def _requesting_team(
    session: Session, actor: Actor, template: Template, slug: str | None
) -> Team | None:
    if slug is not None:
        team = session.scalar(sa.select(Team).where(Team.slug == slug))
        if team is None:
            raise ValidationFailed.one("requesting_team", f"no team {slug!r}")
        if team.id not in actor.team_ids and actor.role not in PRIVILEGED:
            raise Forbidden(f"you are not a member of team {slug!r}")
        return team
    mine = list(
        session.scalars(sa.select(Team).where(Team.id.in_(actor.team_ids)).order_by(Team.id))
    )
    if template.allowed_teams:
        mine = [t for t in mine if t.slug in template.allowed_teams]
    return mine[0] if mine else None


def _require_use(actor: Actor, template: Template, team: Team | None) -> None:
    if actor.role == Role.VIEWER.value:
        raise Forbidden("viewers cannot run templates")
    if not template.allowed_teams or actor.role in PRIVILEGED:
        return
    if team is None or team.slug not in template.allowed_teams:
        allowed = ", ".join(template.allowed_teams)
        raise Forbidden(f"template {template.name!r} may be used by the teams: {allowed}")


def approver_ids(*, session: Session, run: Run) -> list[int]:
    """Who is asked to approve a run: the owning team's lead, or every SRE."""
    approval = run.spec.get("approval", Approval.NONE.value)
    if approval == Approval.TEAM_LEAD.value:
        template = session.get(Template, run.template_id)
        team = session.get(Team, template.owner_team_id) if template is not None else None
        return [team.lead_user_id] if team is not None else []
    if approval == Approval.SRE.value:
        return list(
            session.scalars(
                sa.select(User.id)
                .where(User.role == Role.SRE.value, User.is_active.is_(True))
                .order_by(User.id)
            )
        )
    return []


def _require_approver(session: Session, actor: Actor, run: Run) -> None:
    if actor.user_id is not None and actor.user_id == run.requester_user_id:
        raise Forbidden("a run cannot be approved or rejected by its own requester")
    if actor.role == Role.ADMIN.value:
        return
    if actor.user_id is None or actor.user_id not in approver_ids(session=session, run=run):
        who = (
            "an SRE" if run.spec.get("approval") == Approval.SRE.value else "the owning team's lead"
        )
        raise Forbidden(f"this run waits for approval by {who}")


# -- use cases ---------------------------------------------------------------------------------
def start(
    *,
    session: Session,
    actor: Actor,
    template_name: str,
    parameters: Mapping[str, Any],
    dry_run: bool = False,
    requesting_team: str | None = None,
) -> Run:
    """Validate the parameters and create the run: queued, or waiting for approval."""
    template = templates.get(session=session, name=template_name)
    team = _requesting_team(session, actor, template, requesting_team)
    _require_use(actor, template, team)
    spec = template.spec
    values = validate_parameters(spec.get("parameters") or {}, dict(parameters))
    needs_approval = template.approval != Approval.NONE.value and not dry_run
    run = Run(
        template_id=template.id,
        template_version=template.version,
        spec=spec,
        parameters=values,
        status=RunStatus.AWAITING_APPROVAL.value if needs_approval else RunStatus.QUEUED.value,
        dry_run=dry_run,
        requester_user_id=actor.user_id,
        requesting_team_id=team.id if team is not None else None,
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    for index, step in enumerate(spec["steps"]):
        session.add(
            RunStep(
                run_id=run.id,
                index=index,
                step_id=step["id"],
                action=step["action"],
                status=StepStatus.PENDING.value,
                log="",
            )
        )
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="selfservice.run.start",
        object_type=OBJECT_TYPE,
        object_id=run.id,
        after=snapshot(run)
        | {"template": template.name, "parameters": _redacted_parameters(values)},
    )
    if needs_approval:
        for user_id in approver_ids(session=session, run=run):
            if user_id == actor.user_id:
                continue
            inbox.notify(
                session=session,
                user_id=user_id,
                title=f"Approve a run of {template.title}?",
                body=f"{actor.label} asks to run {template.name!r} with {_summary(values)}.",
                link=f"/selfservice/runs/{run.id}",
            )
    else:
        jobs.enqueue(session=session, kind=RUN_JOB, payload={"run_id": run.id})
    return run


def approve(*, session: Session, actor: Actor, run_id: int, reason: str = "") -> Run:
    """Let a run waiting for approval go ahead (the owning team's lead, or an SRE)."""
    run = get(session=session, run_id=run_id)
    if run.status != RunStatus.AWAITING_APPROVAL.value:
        raise Conflict(
            f"run {run_id} is {run.status}; only a run awaiting approval can be approved"
        )
    _require_approver(session, actor, run)
    before = snapshot(run)
    run.status = RunStatus.QUEUED.value
    run.approver_user_id = actor.user_id
    run.decision_reason = reason.strip() or None
    run.decided_at = utcnow()
    session.flush()
    _record(session, actor, run, "approve", before)
    jobs.enqueue(session=session, kind=RUN_JOB, payload={"run_id": run.id})
    _notify_requester(session, run, f"Your template run {run.id} was approved")
    return run


def reject(*, session: Session, actor: Actor, run_id: int, reason: str) -> Run:
    """End a run waiting for approval, with the reason the requester will read."""
    run = get(session=session, run_id=run_id)
    if run.status != RunStatus.AWAITING_APPROVAL.value:
        raise Conflict(
            f"run {run_id} is {run.status}; only a run awaiting approval can be rejected"
        )
    _require_approver(session, actor, run)
    if not reason.strip():
        raise ValidationFailed.one("reason", "say why the run is rejected")
    before = snapshot(run)
    now = utcnow()
    run.status = RunStatus.REJECTED.value
    run.approver_user_id = actor.user_id
    run.decision_reason = reason.strip()
    run.decided_at = now
    run.finished_at = now
    session.flush()
    _record(session, actor, run, "reject", before)
    _notify_requester(session, run, f"Your template run {run.id} was rejected", reason.strip())
    return run


def retry(*, session: Session, actor: Actor, run_id: int) -> Run:
    """Queue a failed run again: it restarts at the failed step, re-running compensated ones."""
    run = get(session=session, run_id=run_id)
    if run.status != RunStatus.FAILED.value:
        raise Conflict(f"run {run_id} is {run.status}; only a failed run can be retried")
    if actor.role == Role.VIEWER.value or (
        actor.user_id != run.requester_user_id and actor.role not in PRIVILEGED
    ):
        raise Forbidden("only the requester, SREs and admins may retry a run")
    before = snapshot(run)
    for step in steps_of(session=session, run_id=run.id):
        if step.status != StepStatus.SUCCEEDED.value:
            step.status = StepStatus.PENDING.value
            step.error = None
    run.status = RunStatus.QUEUED.value
    run.error = None
    run.failed_step = None
    run.finished_at = None
    session.flush()
    _record(session, actor, run, "retry", before)
    jobs.enqueue(session=session, kind=RUN_JOB, payload={"run_id": run.id})
    return run


def reveal_secrets(
    *, session: Session, actor: Actor, run_id: int, box: SecretBox
) -> dict[str, str]:
    """The run's secrets in plain text, once, to its requester."""
    run = get(session=session, run_id=run_id)
    if actor.user_id is None or actor.user_id != run.requester_user_id:
        raise Forbidden("only the requester of a run may see its secrets")
    secrets = list(
        session.scalars(
            sa.select(RunSecret).where(RunSecret.run_id == run.id).order_by(RunSecret.name)
        )
    )
    if not secrets:
        raise NotFound(f"run {run_id} stored no secrets")
    unseen = [s for s in secrets if s.revealed_at is None]
    if not unseen:
        raise Conflict("these secrets were shown once already; they are not shown again")
    now = utcnow()
    plaintext = {}
    for secret in unseen:
        plaintext[secret.name] = box.decrypt(secret.ciphertext)
        secret.revealed_at = now
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="selfservice.run.secrets_revealed",
        object_type=OBJECT_TYPE,
        object_id=run.id,
        after={"names": sorted(plaintext)},
    )
    return plaintext


def rendered_outputs(*, session: Session, run: Run) -> dict[str, Any]:
    """The template's ``output`` (links and entity references) rendered from the run's steps."""
    context = _context(run, steps_of(session=session, run_id=run.id), run_facts(session, run))
    output = run.spec.get("output") or {}
    try:
        return {
            "links": templates.render(output.get("links") or [], context, where="output.links"),
            "entities": templates.render(
                output.get("entities") or [], context, where="output.entities"
            ),
        }
    except templates.ExpressionError as exc:
        return {"links": [], "entities": [], "error": exc.detail}


def run_facts(session: Session, run: Run) -> dict[str, Any]:
    """What expressions read as ``run``: id, dry_run, requester (email) and team (slug)."""
    requester = session.get(User, run.requester_user_id) if run.requester_user_id else None
    team = session.get(Team, run.requesting_team_id) if run.requesting_team_id else None
    return {
        "id": run.id,
        "dry_run": run.dry_run,
        "requester": requester.email if requester is not None else None,
        "team": team.slug if team is not None else None,
    }


def _context(run: Run, steps: list[RunStep], facts: dict[str, Any]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for step in steps:
        if step.status == StepStatus.SUCCEEDED.value:
            outputs[step.step_id] = step.output or {}
        elif run.dry_run:
            outputs[step.step_id] = templates.placeholder_output(step.step_id)
    return templates.expression_context(run.parameters, outputs, facts)


# -- the job -----------------------------------------------------------------------------------
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
        self.run: Run | None = None
        self.current: RunStep | None = None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with Session(self.bind, expire_on_commit=False) as session, session.begin():
            yield session

    def scrub(self, text: str) -> str:
        for value in self.secret_values:
            if value:
                text = text.replace(value, REDACTED)
        return text

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
                session.flush()
                _record(session, self.actor, run, "running", before)
            return run

    def requester(self, session: Session, run: Run) -> Actor:
        user = session.get(User, run.requester_user_id) if run.requester_user_id else None
        if user is None:
            return self.actor
        team_ids = frozenset(
            session.scalars(sa.select(TeamMember.team_id).where(TeamMember.user_id == user.id))
        )
        return Actor(
            kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=team_ids
        )

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
        try:
            for step in steps:
                if step.status in (StepStatus.SUCCEEDED.value, StepStatus.SKIPPED.value):
                    continue
                self.current = step
                self.execute_step(run, step, steps)
            self.current = None
        except _StepFailed as failure:
            self.fail(run, failure)
            return
        self.succeed(run)

    def execute_step(self, run: Run, step: RunStep, steps: list[RunStep]) -> None:
        spec = run.spec["steps"][step.index]
        where = f"steps.{step.step_id}"
        context = _context(run, steps, self.facts)
        try:
            if "if" in spec and not templates.condition(spec["if"], context, where=f"{where}.if"):
                step.status = StepStatus.SKIPPED.value
                self.update_step(
                    step.id,
                    status=step.status,
                    log=["skipped: its condition is false"],
                    finished_at=utcnow(),
                )
                return
            rendered = templates.render(spec.get("input") or {}, context, where=f"{where}.input")
        except templates.ExpressionError as exc:
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
        if run.dry_run:
            step.status = StepStatus.SKIPPED.value
            step.input = rendered
            self.update_step(
                step.id,
                status=step.status,
                input=rendered,
                log=["dry run: input rendered, nothing done"],
                started_at=utcnow(),
                finished_at=utcnow(),
            )
            return
        step.input = rendered
        self.update_step(
            step.id,
            status=StepStatus.RUNNING.value,
            input=rendered,
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
                dumped = output.model_dump(mode="json")
                row = session.get(RunStep, step.id)
                assert row is not None
                row.status = StepStatus.SUCCEEDED.value
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
        step.status = StepStatus.SUCCEEDED.value
        step.output = dumped

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
            data = action_type.Input.model_validate(step.input or {})
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
                session.flush()
                _record(session, self.actor, row, "failed", before)
                events.emit(
                    session=session,
                    type="selfservice.run.failed",
                    subject=f"template_run:{row.id}",
                    payload={"id": row.id, "failed_step": row.failed_step, "error": row.error},
                )
        except Exception:
            log.exception("template run %s could not be marked failed", self.run.id)

    def fail(self, run: Run, failure: _StepFailed) -> None:
        with self.transaction() as session:
            steps = steps_of(session=session, run_id=run.id)
        by_index = {s.index: s for s in steps}
        failed_index = failure.step.index
        undo_failed: list[str] = []
        # The failed step may have done part of its work: undo whatever exists under ctx.key.
        failed_row = by_index[failed_index]
        if failed_row.input is not None and not self.compensate(run, failed_row, None):
            undo_failed.append(failed_row.step_id)
        for index in range(failed_index - 1, -1, -1):
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
            session.flush()
            _record(session, self.actor, row, "failed", before)
            events.emit(
                session=session,
                type="selfservice.run.failed",
                subject=f"template_run:{row.id}",
                payload={
                    "id": row.id,
                    "template": row.spec.get("name"),
                    "dry_run": row.dry_run,
                    "failed_step": row.failed_step,
                    "error": error,
                },
            )
            _notify_requester(session, row, f"Your template run {row.id} failed", error)

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
            session.flush()
            _record(session, self.actor, row, "succeeded", before)
            events.emit(
                session=session,
                type="selfservice.run.succeeded",
                subject=f"template_run:{row.id}",
                payload={
                    "id": row.id,
                    "template": row.spec.get("name"),
                    "dry_run": row.dry_run,
                    "ticket_id": row.ticket_id,
                },
            )
            _notify_requester(session, row, f"Your template run {row.id} succeeded")


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
