"""Template runs: start, approval, rejection, retry, secrets and what a run page reads.

A run moves ``awaiting_approval → queued → running → succeeded | failed`` (or ``rejected``).
Starting or approving a run enqueues the ``selfservice.run`` job; ``runner`` executes it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from jsonschema import Draft202012Validator
from sqlalchemy.orm import Session

from lamplighter.core import audit, identity, inbox, jobs, people
from lamplighter.core.authz import PRIVILEGED
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import utcnow
from lamplighter.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from lamplighter.core.models import Role, Team
from lamplighter.core.pagination import keyset
from lamplighter.selfservice import expressions, templates
from lamplighter.selfservice.lifecycle import OBJECT_TYPE, announce, snapshot
from lamplighter.selfservice.models import (
    Approval,
    Run,
    RunSecret,
    RunStatus,
    RunStep,
    StepStatus,
    Template,
)

log = logging.getLogger("lamplighter.selfservice")
RUN_JOB = "selfservice.run"
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
        team = people.find_team_by_slug(session=session, slug=slug)
        if team is None:
            raise ValidationFailed.one("requesting_team", f"no team {slug!r}")
        if team.id not in actor.team_ids and actor.role not in PRIVILEGED:
            raise Forbidden(f"you are not a member of team {slug!r}")
        return team
    mine = sorted(
        people.teams_by_id(session=session, ids=actor.team_ids).values(), key=lambda t: t.id
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
    """Who is asked to approve a run: the owning team's lead (for a team without a lead, the
    nearest lead above it), or every SRE."""
    approval = run.spec.get("approval", Approval.NONE.value)
    if approval == Approval.TEAM_LEAD.value:
        template = session.get(Template, run.template_id)
        if template is None:
            return []
        lead = identity.nearest_lead(session=session, team_id=template.owner_team_id)
        return [lead.id] if lead is not None else []
    if approval == Approval.SRE.value:
        return [u.id for u in people.active_users_with_role(session=session, role=Role.SRE)]
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
    announce(
        session,
        actor,
        run,
        "requested",
        None,
        audit_extra={"template": template.name, "parameters": _redacted_parameters(values)},
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
        enqueue_run(session, run, "start")
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
    announce(session, actor, run, "approved", before)
    enqueue_run(session, run, "approve")
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
    announce(session, actor, run, "rejected", before, body=reason.strip())
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
    failed_at = run.finished_at
    for step in steps_of(session=session, run_id=run.id):
        if step.status != StepStatus.SUCCEEDED.value:
            step.status = StepStatus.PENDING.value
            step.error = None
    run.status = RunStatus.QUEUED.value
    run.error = None
    run.failed_step = None
    run.finished_at = None
    announce(session, actor, run, "retried", before)
    enqueue_run(session, run, f"retry-after-{failed_at.isoformat() if failed_at else 'unknown'}")
    return run


def enqueue_run(session: Session, run: Run, why: str) -> None:
    """Queue the job that executes a run, keyed by why it is queued (started, approved, or
    retried after the failure of a given moment): a replayed request cannot queue it twice."""
    jobs.enqueue(
        session=session,
        kind=RUN_JOB,
        payload={"run_id": run.id},
        idempotency_key=f"{RUN_JOB}:{run.id}:{why}",
    )


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
    context = step_context(run, steps_of(session=session, run_id=run.id), run_facts(session, run))
    output = run.spec.get("output") or {}
    try:
        return {
            "links": expressions.render(output.get("links") or [], context, where="output.links"),
            "entities": expressions.render(
                output.get("entities") or [], context, where="output.entities"
            ),
        }
    except expressions.ExpressionError as exc:
        return {"links": [], "entities": [], "error": exc.detail}


def run_facts(session: Session, run: Run) -> dict[str, Any]:
    """What expressions read as ``run``: id, dry_run, requester (email) and team (slug)."""
    requester = people.find_user(session=session, user_id=run.requester_user_id)
    team = people.find_team(session=session, team_id=run.requesting_team_id)
    return {
        "id": run.id,
        "dry_run": run.dry_run,
        "requester": requester.email if requester is not None else None,
        "team": team.slug if team is not None else None,
    }


def step_context(run: Run, steps: list[RunStep], facts: dict[str, Any]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for step in steps:
        if step.status == StepStatus.SUCCEEDED.value:
            outputs[step.step_id] = step.output or {}
        elif run.dry_run:
            outputs[step.step_id] = expressions.placeholder_output(step.step_id)
    return expressions.expression_context(run.parameters, outputs, facts)
