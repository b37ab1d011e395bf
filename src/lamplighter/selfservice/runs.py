"""Template runs: start, approval, rejection, retry, secrets and what a run page reads.

A run moves ``awaiting_approval → queued → running → succeeded | failed`` (or ``rejected``).
Starting or approving a run enqueues the ``selfservice.run`` job; ``runner`` executes it.

**Secret parameters.** A parameter whose schema says ``format: password`` or ``writeOnly: true``
is stored encrypted (a :class:`RunSecret` named ``parameters.<path>``) and as ``[secret]`` in the
run's ``parameters``; only the runner puts the value back, into the input the action receives.
What is stored or shown of the run (rendered step inputs, outputs, logs, errors, audit entries,
events) has every secret value, from a parameter or from ``ctx.secret``, replaced by
``[secret]`` (:func:`scrub_value`, ``runner._Runner.scrub``).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, identity, inbox, jobs, people
from lamplighter.core.authz import PRIVILEGED
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import utcnow
from lamplighter.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from lamplighter.core.models import Role, Team
from lamplighter.core.pagination import keyset
from lamplighter.core.settings import Settings, get_settings
from lamplighter.selfservice import expressions, forms, patterns, preflight, templates
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
PARAMETER_SECRET_PREFIX = "parameters."  # noqa: S105 - RunSecret.name of a secret parameter
MAX_SECRET_PATHS = 100


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
    validator = patterns.validator_for(schema)
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
        problems.append(FieldError(".".join(path), _in_words(error)))
    if problems:
        known = [v for _, v in secret_values_of(schema, values) if isinstance(v, str)]
        problems = [FieldError(p.field, scrub_text(p.reason, known)) for p in problems]
        first = problems[0]
        raise ValidationFailed(f"{first.field}: {first.reason}", errors=problems)
    return dict(values)


def _in_words(error: Any) -> str:
    """A schema error as the person filling the form reads it. A template says what a pattern
    means with ``errorMessage: {pattern: "…"}`` (the ajv-errors keyword) on the property; else
    its description stands in, never the regular expression."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    custom = schema.get("errorMessage")
    if isinstance(custom, Mapping):
        custom = custom.get(str(error.validator))
    if isinstance(custom, str) and custom.strip():
        return f"{_shown(error.instance)} is not allowed: {custom.strip()}"
    if error.validator == "pattern":
        hint = schema.get("description") or schema.get("title")
        return f"{_shown(error.instance)} is not in the expected form" + (
            f": {str(hint).strip()}" if hint else ""
        )
    if error.validator == "enum":
        choices = ", ".join(str(v) for v in error.validator_value)
        return f"{_shown(error.instance)} is not one of the choices: {choices}"
    if error.validator == "type":
        return f"{_shown(error.instance)} is not a {error.validator_value}"
    if error.validator in ("minLength", "maxLength"):
        limit = int(error.validator_value)
        if error.validator == "minLength":
            return "is required" if limit == 1 else f"must be at least {limit} characters"
        return f"must be at most {limit} characters"
    if error.validator in ("minimum", "maximum"):
        word = "at least" if error.validator == "minimum" else "at most"
        return f"must be {word} {error.validator_value}"
    return str(error.message)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


# -- secrets -----------------------------------------------------------------------------------
def secret_paths(schema: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The paths of the secret parameters (``format: password`` or ``writeOnly: true``), nested
    object properties included."""
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        return
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        if forms.is_secret(sub):
            yield (*path, str(name))
        else:
            yield from secret_paths(sub, (*path, str(name)))


_ABSENT = object()


def secret_values_of(schema: Any, values: Any) -> list[tuple[str, Any]]:
    """``(dotted path, value)`` of every secret parameter present in ``values``."""
    found = []
    for path in secret_paths(schema):
        node = values
        for part in path:
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT and node is not None:
            found.append((".".join(path), node))
    return found[:MAX_SECRET_PATHS]


def masked_parameters(schema: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as stored and shown: every secret one replaced by ``[secret]``."""
    masked = copy.deepcopy(dict(values))
    for dotted, _ in secret_values_of(schema, masked):
        *parents, last = dotted.split(".")
        node = masked
        for part in parents:
            node = node[part]
        node[last] = REDACTED
    return masked


def secret_forms(value: str) -> list[str]:
    """The spellings of a secret that may reach stored text: as is, JSON- and repr-escaped,
    URL-encoded. Longest first, so a longer spelling is replaced before a shorter one."""
    if not value:
        return []
    spellings = {
        value,
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
    }
    return sorted((s for s in spellings if s), key=len, reverse=True)


def scrub_text(text: str, secrets: list[str]) -> str:
    """``text`` with every spelling of each secret replaced by ``[secret]``."""
    for secret in secrets:
        for spelling in secret_forms(secret):
            text = text.replace(spelling, REDACTED)
    return text


def scrub_value(value: Any, secrets: list[str]) -> Any:
    """A JSON value with every secret in its strings replaced by ``[secret]``."""
    if not secrets:
        return value
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, Mapping):
        return {key: scrub_value(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_value(item, secrets) for item in value]
    return value


def _store_parameter_secrets(
    session: Session, box: SecretBox, run: Run, secrets: list[tuple[str, Any]]
) -> None:
    for dotted, value in secrets:
        session.add(
            RunSecret(
                run_id=run.id,
                name=PARAMETER_SECRET_PREFIX + dotted,
                ciphertext=box.encrypt(orjson.dumps(value).decode()),
                created_at=utcnow(),
            )
        )
    session.flush()


def parameters_with_secrets(
    *, session: Session, run: Run, box: SecretBox
) -> tuple[dict[str, Any], list[str]]:
    """The run's parameters with the secret ones decrypted (what the runner renders step inputs
    with), and the secret values as text (what it masks)."""
    values = copy.deepcopy(dict(run.parameters))
    known: list[str] = []
    rows = session.scalars(
        sa.select(RunSecret).where(
            RunSecret.run_id == run.id, RunSecret.name.startswith(PARAMETER_SECRET_PREFIX)
        )
    )
    for row in rows:
        *parents, last = row.name.removeprefix(PARAMETER_SECRET_PREFIX).split(".")
        value = orjson.loads(box.decrypt(row.ciphertext))
        node: Any = values
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[last] = value
        known.append(value if isinstance(value, str) else orjson.dumps(value).decode())
    return values, known


def action_secrets(*, session: Session, run_id: int) -> list[tuple[str, bool]]:
    """The names of the secrets a run's actions stored (not its secret parameters: the
    requester typed those), each with whether it was shown already."""
    rows = session.execute(
        sa.select(RunSecret.name, RunSecret.revealed_at)
        .where(
            RunSecret.run_id == run_id,
            sa.not_(RunSecret.name.startswith(PARAMETER_SECRET_PREFIX)),
        )
        .order_by(RunSecret.name)
    ).all()
    return [(name, revealed is not None) for name, revealed in rows]


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


@dataclass(frozen=True)
class Approvers:
    """Who may approve a run, and why them (said on the run page and in their inbox)."""

    user_ids: list[int]
    why: str


def approvers(*, session: Session, run: Run) -> Approvers:
    """A ``team-lead`` run waits for the lead of the team it is for (the requesting team, else
    the template's owners); a team without a lead, or led by the requester, goes to the
    nearest lead above it, and with none left to the SREs. An ``sre`` run waits for any SRE."""
    approval = run.spec.get("approval", Approval.NONE.value)
    sres = [u.id for u in people.active_users_with_role(session=session, role=Role.SRE)]
    if approval == Approval.TEAM_LEAD.value:
        template = session.get(Template, run.template_id)
        team_id = run.requesting_team_id or (template.owner_team_id if template else None)
        team = people.find_team(session=session, team_id=team_id)
        if team is None:
            return Approvers(sres, "the run is for no team, so an SRE approves it")
        chain = [team, *identity.ancestors_of(session=session, team_id=team.id)]
        for candidate in chain:
            lead_id = candidate.lead_user_id
            if lead_id is None or lead_id == run.requester_user_id:
                continue
            lead = people.find_user(session=session, user_id=lead_id)
            if lead is None or not lead.is_active:
                continue
            if candidate.id == team.id:
                why = f"{lead.display_name} leads {team.name}, the team this run is for"
            else:
                why = (
                    f"{lead.display_name} leads {candidate.name}, above {team.name} (the team "
                    f"this run is for, which has no other lead)"
                )
            return Approvers([lead.id], why)
        return Approvers(sres, f"{team.name} has no lead other than the requester: an SRE approves")
    if approval == Approval.SRE.value:
        return Approvers(sres, "the template asks for an SRE's approval")
    return Approvers([], "")


def approver_ids(*, session: Session, run: Run) -> list[int]:
    return approvers(session=session, run=run).user_ids


WAITING_SCAN = 500  # runs awaiting approval looked at for "waiting for your approval"


def waiting_for(*, session: Session, user_id: int, limit: int = 50) -> list[Run]:
    """Runs waiting for this person's approval (they are asked, not merely allowed: admins see
    the runs they are asked for), oldest first."""
    found: list[Run] = []
    asked: dict[tuple[Any, ...], list[int]] = {}
    candidates = session.scalars(
        sa.select(Run)
        .where(Run.status == RunStatus.AWAITING_APPROVAL.value)
        .order_by(Run.created_at, Run.id)
        .limit(WAITING_SCAN)
    )
    for run in candidates:
        if run.requester_user_id == user_id:
            continue
        key = (
            run.spec.get("approval"),
            run.requesting_team_id,
            run.template_id,
            run.requester_user_id,
        )
        if key not in asked:
            asked[key] = approver_ids(session=session, run=run)
        if user_id in asked[key]:
            found.append(run)
            if len(found) >= limit:
                break
    return found


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
    box: SecretBox | None = None,
    settings: Settings | None = None,
) -> Run:
    """Validate the parameters and create the run: queued, or waiting for approval. Secret
    parameters are stored encrypted with ``box`` (by default the configured key's)."""
    template = templates.get(session=session, name=template_name)
    team = _requesting_team(session, actor, template, requesting_team)
    _require_use(actor, template, team)
    spec = templates.runnable_spec(template)
    schema = spec.get("parameters") or {}
    real = validate_parameters(schema, dict(parameters))
    if not dry_run:  # a dry run is created, and fails on the step that cannot run
        preflight.check_start(
            session=session,
            actor=actor,
            spec=spec,
            parameters=real,
            team=team,
            settings=settings or get_settings(),
            box=box,
        )
    secrets = secret_values_of(schema, real)
    values = masked_parameters(schema, real)
    needs_approval = spec["approval"] != Approval.NONE.value and not dry_run
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
    if secrets:
        if box is None:
            box = SecretBox(get_settings().effective_secret_key())
        _store_parameter_secrets(session, box, run, secrets)
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
        asked = approvers(session=session, run=run)
        for user_id in asked.user_ids:
            if user_id == actor.user_id:
                continue
            inbox.notify(
                session=session,
                user_id=user_id,
                title=f"Approve a run of {template.title}?",
                body=f"{actor.label} asks to run {template.name!r} with {_summary(values)}. "
                f"You are asked because {asked.why}.",
                link=f"/selfservice/runs/{run.id}#decision",
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
            sa.select(RunSecret)
            .where(
                RunSecret.run_id == run.id,
                sa.not_(RunSecret.name.startswith(PARAMETER_SECRET_PREFIX)),
            )
            .order_by(RunSecret.name)
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
    """The template's ``output`` (links and entities): as stored when the run ended, or
    rendered now (within the expression bounds) for a run that ended before they were stored."""
    if run.outputs is not None:
        return dict(run.outputs)
    return render_outputs(
        run=run, steps=steps_of(session=session, run_id=run.id), facts=run_facts(session, run)
    )


def render_outputs(*, run: Run, steps: list[RunStep], facts: dict[str, Any]) -> dict[str, Any]:
    """Render the template's ``output`` from the run's steps over the stored (masked)
    parameters, keeping only the links a browser may safely follow (:func:`link_problem`);
    what is left out is said in ``error``."""
    context = step_context(run, steps, facts)
    output = run.spec.get("output") or {}
    try:
        links = expressions.render(output.get("links") or [], context, where="output.links")
        entities = expressions.render(
            output.get("entities") or [], context, where="output.entities"
        )
    except expressions.ExpressionError as exc:
        return {"links": [], "entities": [], "error": exc.detail}
    kept: list[dict[str, Any]] = []
    problems: list[str] = []
    for index, link in enumerate(links if isinstance(links, list) else []):
        url = link.get("url") if isinstance(link, Mapping) else None
        if run.dry_run and isinstance(link, Mapping) and isinstance(url, str):
            # Shown as text, never as a link ("what a real run would make"): a placeholder
            # like "<output of step repo>" says where the real one comes from.
            kept.append({"title": str(link.get("title") or url), "url": url})
            continue
        problem = link_problem(url)
        if problem is None and isinstance(link, Mapping):
            kept.append({"title": str(link.get("title") or url), "url": url})
        else:
            problems.append(f"output.links.{index}.url: {problem} (the link was left out)")
    result: dict[str, Any] = {"links": kept, "entities": entities}
    if problems:
        result["error"] = "; ".join(problems)
    return result


def link_problem(url: Any) -> str | None:
    """Why an output link may not be shown as a link, or None. A link is an http(s) URL with a
    host, or a path on this site: ``//host`` and ``/\\host`` lead browsers to another site, and
    ``javascript:`` or ``data:`` run in this one."""
    if not isinstance(url, str) or not url:
        return "a link needs a URL"
    if "\\" in url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "a link may not hold spaces, control characters or backslashes"
    if url.startswith("/"):
        if url.startswith("//"):
            return f"{url[:80]!r} leads to another site; use https://… or a path on this site"
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"{url[:80]!r} is not a URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return f"{url[:80]!r} is not an http(s) URL or a path on this site"
    return None


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


def step_context(
    run: Run,
    steps: list[RunStep],
    facts: dict[str, Any],
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a run's expressions read; ``parameters`` (with secrets) only for the runner."""
    outputs: dict[str, Any] = {}
    for step in steps:
        if step.status == StepStatus.SUCCEEDED.value:
            outputs[step.step_id] = step.output or {}
        elif run.dry_run:
            outputs[step.step_id] = expressions.placeholder_output(step.step_id)
    values = run.parameters if parameters is None else parameters
    return expressions.expression_context(values, outputs, facts)
