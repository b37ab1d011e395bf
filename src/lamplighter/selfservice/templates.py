"""Templates (golden paths): parsing, validation and the template service.

A template is YAML (or the same structure as JSON through the API)::

    name: python-service
    title: Python web service
    description: A repository with CI and a database.
    owner: platform                    # the owning team's slug
    approval: none                     # none | team-lead | sre
    allowed_teams: []                  # team slugs that may use it; empty: every team
    request_type: new-service          # the ticket type a run replaces, for the journal
    parameters:                        # a JSON Schema (Draft 2020-12) object
      type: object
      required: [name]
      properties:
        name: {type: string, pattern: "^[a-z][a-z0-9-]+$"}
        partitions: {type: integer, default: 3}
    steps:
      - id: repo
        action: repo.create
        input:
          name: ${{ parameters.name }}
      - id: topic
        action: kafka.topic
        if: ${{ parameters.partitions > 0 }}
        input:
          name: ${{ parameters.name }}-events
          partitions: ${{ parameters.partitions }}   # stays an integer
          description: "for ${{ steps.repo.output.url }}"
    output:
      links: [{title: Repository, url: "${{ steps.repo.output.url }}"}]
      entities: ["${{ steps.repo.output.entity_ref }}"]

**Expressions** (``${{ … }}``) are in :mod:`lamplighter.selfservice.expressions`.

**Review.** A template has a published definition (``spec``, ``version``), which is what runs,
and at most one ``draft`` waiting for the platform team's review. A member (not an SRE or admin)
who creates or changes a template using a high-risk action (``Action.risk``, e.g.
``postgres.database``) submits a draft: a new template stays at version 0 and cannot run, a
changed one keeps running its published version, until an SRE or admin approves the draft
(:func:`approve_draft`, which publishes it) or rejects it (:func:`reject_draft`). SREs, admins
and the system (golden paths synced from files) publish directly. A run waits for the strictest
of the template's ``approval`` and its actions' ``min_approval`` (:func:`effective_approval`).

Step ids are ``[a-z][a-z0-9_]*`` (no hyphen) so that ``steps.<id>`` reads as an attribute.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jsonschema import Draft202012Validator
from sqlalchemy.orm import Session

from lamplighter.catalog.backstage_yaml import load_all
from lamplighter.core import audit, events, identity, people
from lamplighter.core.authz import PRIVILEGED, require_owned_write, require_role
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import (
    Conflict,
    FieldError,
    LamplighterError,
    NotFound,
    ValidationFailed,
)
from lamplighter.selfservice.actions import base as actions
from lamplighter.selfservice.event_types import (
    TemplateChanged,
    TemplateDeleted,
    TemplateDraftRejected,
    TemplateDraftSubmitted,
)
from lamplighter.selfservice.expressions import WHOLE_RE, check_expression, expressions_in
from lamplighter.selfservice.models import Approval, Run, Template, TemplateSource
from lamplighter.selfservice.patterns import pattern_problems
from lamplighter.tickets import service as tickets

OBJECT_TYPE = "selfservice_template"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
STEP_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_STEPS = 50
MAX_TEMPLATE_BYTES = 1024 * 1024
KEYS = {
    "name",
    "title",
    "description",
    "owner",
    "parameters",
    "steps",
    "output",
    "approval",
    "allowed_teams",
    "request_type",
}
STEP_KEYS = {"id", "action", "input", "if", "title"}


# -- parsing and validation --------------------------------------------------------------------
def parse_yaml(text: str, *, field: str = "file") -> dict[str, Any]:
    """Load one template document from YAML text, refusing bombs, aliases loops and huge files."""
    if len(text) > MAX_TEMPLATE_BYTES:
        raise ValidationFailed.one(field, f"larger than {MAX_TEMPLATE_BYTES:,} bytes")
    documents, refused = load_all(text)
    if refused is not None:
        raise ValidationFailed.one(field, refused.reason)
    documents = [d for d in documents if d is not None]
    if len(documents) != 1:
        raise ValidationFailed.one(field, f"holds {len(documents)} documents; a template is one")
    if not isinstance(documents[0], dict):
        raise ValidationFailed.one(field, "a template is a mapping (name, title, steps …)")
    return documents[0]


@dataclass
class _Problems:
    errors: list[FieldError] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.errors.append(FieldError(where, reason))


def _schema_path(path: Any) -> str:
    return ".".join(["parameters", *(str(p) for p in path)])


def _check_parameters(schema: Any, problems: _Problems) -> dict[str, Any]:
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        problems.add("parameters", "a JSON Schema object (type: object, properties: …)")
        return {}
    if schema.get("type", "object") != "object":
        problems.add("parameters.type", "the parameters schema describes an object")
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for error in sorted(meta.iter_errors(schema), key=lambda e: list(map(str, e.path))):
        problems.add(_schema_path(error.absolute_path), error.message)
    for where, reason in pattern_problems(schema):
        problems.add(f"parameters.{where}", reason)
    properties = schema.get("properties", {})
    if isinstance(properties, dict):
        for key in properties:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", str(key)):
                problems.add(
                    f"parameters.properties.{key}",
                    "a parameter name is letters, digits and '_' (expressions read it as "
                    "parameters.<name>)",
                )
    return schema


def _check_steps(steps: Any, problems: _Problems) -> list[dict[str, Any]]:
    if not isinstance(steps, list) or not steps:
        problems.add("steps", "a non-empty list of steps (id, action, input)")
        return []
    if len(steps) > MAX_STEPS:
        problems.add("steps", f"at most {MAX_STEPS} steps")
    seen: set[str] = set()
    result: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        where = f"steps.{index}"
        if not isinstance(step, dict):
            problems.add(where, "a mapping with id, action and input")
            continue
        for key in sorted(set(step) - STEP_KEYS):
            problems.add(
                f"{where}.{key}", f"unknown key; a step has {', '.join(sorted(STEP_KEYS))}"
            )
        step_id = step.get("id")
        if not isinstance(step_id, str) or not STEP_ID_RE.match(step_id):
            problems.add(f"{where}.id", "a step id is lowercase letters, digits and '_'")
        elif step_id in seen:
            problems.add(f"{where}.id", f"two steps are named {step_id!r}")
        action_name = step.get("action")
        action_type: type[actions.Action] | None = None
        if not isinstance(action_name, str) or not action_name:
            problems.add(f"{where}.action", "the name of an action, e.g. repo.create")
        else:
            try:
                action_type = actions.get(action_name)
            except actions.ActionError as exc:
                problems.add(f"{where}.action", str(exc))
        data = step.get("input", {})
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.add(f"{where}.input", "a mapping of the action's input fields")
            data = {}
        if action_type is not None:
            _check_input_fields(action_type, data, f"{where}.input", problems)
        earlier = set(seen)
        for expression in expressions_in(data):
            problem = check_expression(expression, known_steps=earlier)
            if problem:
                problems.add(f"{where}.input", problem)
        clean: dict[str, Any] = {"id": step_id, "action": action_name, "input": data}
        if "title" in step:
            clean["title"] = str(step["title"])
        if "if" in step and step["if"] is not None:
            raw = step["if"]
            if not isinstance(raw, (str, bool)):
                problems.add(f"{where}.if", "an expression, e.g. ${{ parameters.with_db }}")
            elif isinstance(raw, str):
                whole = WHOLE_RE.match(raw)
                problem = check_expression(
                    (whole.group(1) if whole else raw).strip(), known_steps=earlier
                )
                if problem:
                    problems.add(f"{where}.if", problem)
            clean["if"] = raw
        if isinstance(step_id, str):
            seen.add(step_id)
        result.append(clean)
    return result


def _check_input_fields(
    action_type: type[actions.Action], data: Mapping[str, Any], where: str, problems: _Problems
) -> None:
    """Unknown and missing input fields are known before any run (values may be expressions)."""
    fields = action_type.Input.model_fields
    for key in sorted(set(data) - set(fields)):
        problems.add(
            f"{where}.{key}",
            f"{action_type.name} has no input {key!r}; its inputs: {', '.join(sorted(fields))}",
        )
    for key, info in fields.items():
        if info.is_required() and key not in data:
            problems.add(f"{where}.{key}", f"{action_type.name} needs this input")


def _check_output(output: Any, step_ids: set[str], problems: _Problems) -> dict[str, Any]:
    if output is None:
        return {"links": [], "entities": []}
    if not isinstance(output, dict):
        problems.add("output", "a mapping with links and entities")
        return {"links": [], "entities": []}
    for key in sorted(set(output) - {"links", "entities"}):
        problems.add(f"output.{key}", "unknown key; output has links and entities")
    links = output.get("links") or []
    entities = output.get("entities") or []
    if not isinstance(links, list):
        problems.add("output.links", "a list of {title, url}")
        links = []
    for index, link in enumerate(links):
        if not isinstance(link, dict) or set(link) != {"title", "url"}:
            problems.add(f"output.links.{index}", "a link is {title, url}")
    if not isinstance(entities, list):
        problems.add("output.entities", "a list of entity references")
        entities = []
    for where, value in (("output.links", links), ("output.entities", entities)):
        for expression in expressions_in(value):
            problem = check_expression(expression, known_steps=step_ids)
            if problem:
                problems.add(where, problem)
    return {"links": links, "entities": entities}


def validate(*, session: Session, definition: Mapping[str, Any]) -> dict[str, Any]:
    """Check a template definition; return its normalised spec or raise every problem at once."""
    problems = _Problems()
    for key in sorted(set(definition) - KEYS):
        problems.add(key, f"unknown key; a template has {', '.join(sorted(KEYS))}")
    name = definition.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.add("name", "a slug: lowercase letters, digits and '-', at most 63 characters")
    title = definition.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        problems.add("title", "a title of 1 to 200 characters")
    description = definition.get("description") or ""
    if not isinstance(description, str):
        problems.add("description", "text")
        description = ""
    owner = definition.get("owner")
    if not isinstance(owner, str) or not owner:
        problems.add("owner", "the slug of the owning team")
    elif not people.teams_by_slug(session=session, slugs=[owner]):
        problems.add("owner", f"no team {owner!r}")
    parameters = _check_parameters(definition.get("parameters"), problems)
    steps = _check_steps(definition.get("steps"), problems)
    step_ids = {s["id"] for s in steps if isinstance(s.get("id"), str)}
    output = _check_output(definition.get("output"), step_ids, problems)
    approval = definition.get("approval") or Approval.NONE.value
    if approval not in {a.value for a in Approval}:
        problems.add("approval", "one of none, team-lead, sre")
    allowed = definition.get("allowed_teams") or []
    if not isinstance(allowed, list) or not all(isinstance(s, str) for s in allowed):
        problems.add("allowed_teams", "a list of team slugs")
        allowed = []
    else:
        known = people.teams_by_slug(session=session, slugs=allowed)
        for index, slug in enumerate(allowed):
            if slug not in known:
                problems.add(f"allowed_teams.{index}", f"no team {slug!r}")
    request_type = definition.get("request_type")
    if request_type is not None:
        if not isinstance(request_type, str):
            problems.add("request_type", "a ticket type slug")
        else:
            try:
                request_type = tickets.get_type(
                    session=session, slug=request_type, field="request_type"
                ).slug
            except ValidationFailed as exc:
                problems.errors.extend(exc.errors)
    if problems.errors:
        first = problems.errors[0]
        more = f" (and {len(problems.errors) - 1} more)" if len(problems.errors) > 1 else ""
        raise ValidationFailed(
            f"the template is not valid: {first.field}: {first.reason}{more}",
            errors=problems.errors,
        )
    return {
        "name": name,
        "title": str(title).strip(),
        "description": description,
        "owner": owner,
        "parameters": parameters,
        "steps": steps,
        "output": output,
        "approval": approval,
        "allowed_teams": list(allowed),
        "request_type": request_type,
    }


# -- trust: risk, approval, review -------------------------------------------------------------
def _step_actions(spec: Mapping[str, Any]) -> list[type[actions.Action]]:
    found = []
    for step in spec.get("steps") or []:
        try:
            found.append(actions.get(str(step.get("action"))))
        except actions.ActionError:
            continue  # validate() names it; an action gone since cannot run either
    return found


def privileged_actions(spec: Mapping[str, Any]) -> list[str]:
    """The high-risk actions a definition uses, by name (what makes it need review)."""
    names = {a.name for a in _step_actions(spec) if actions.risk_of(a) == "high"}
    return sorted(names)


def effective_approval(spec: Mapping[str, Any]) -> Approval:
    """The approval a run waits for: the strictest of the template's own and its steps'
    ``min_approval`` (a step with ``if`` counts: it may run)."""
    return actions.strictest(
        str(spec.get("approval") or Approval.NONE.value),
        *(a.min_approval for a in _step_actions(spec)),
    )


def decided_by(spec: Mapping[str, Any]) -> str | None:
    """Who decides after the run has done its part (an access request's approver), if anyone:
    said beside the template's approval, so "No approval" never hides a decision."""
    for action in _step_actions(spec):
        if action.decided_by:
            return action.decided_by
    return None


def is_published(template: Template) -> bool:
    return template.version > 0 and bool(template.spec)


def runnable_spec(template: Template) -> dict[str, Any]:
    """The published definition a run starts from, carrying its effective approval; a template
    never published (its first definition waits for review) cannot run."""
    if not is_published(template):
        raise Conflict(
            f"template {template.name!r} cannot run yet: its definition uses privileged actions "
            f"({', '.join(privileged_actions(template.draft or {})) or 'none'}) and waits for "
            "the platform team's review"
        )
    return {**template.spec, "approval": effective_approval(template.spec).value}


def needs_review(actor: Actor, spec: Mapping[str, Any]) -> bool:
    """A member's definition using a high-risk action waits for the platform team."""
    return actor.role not in PRIVILEGED and bool(privileged_actions(spec))


def may_review(actor: Actor) -> bool:
    return actor.role in PRIVILEGED


def require_reviewer(actor: Actor) -> None:
    require_role(actor, *sorted(PRIVILEGED), action="reviewing a template's draft")


# -- service -----------------------------------------------------------------------------------
def snapshot(template: Template) -> dict[str, Any]:
    return {
        "name": template.name,
        "title": template.title,
        "owner_team_id": template.owner_team_id,
        "approval": template.approval,
        "allowed_teams": template.allowed_teams,
        "request_type": template.request_type,
        "source": template.source,
        "version": template.version,
        "draft_pending": template.draft is not None,
    }


def get_by_name(*, session: Session, name: str) -> Template | None:
    return session.scalar(sa.select(Template).where(Template.name == name))


def get(*, session: Session, name: str) -> Template:
    template = get_by_name(session=session, name=name)
    if template is None:
        raise NotFound(f"no template named {name!r}")
    return template


def list_(*, session: Session) -> list[Template]:
    return list(session.scalars(sa.select(Template).order_by(Template.name)))


def _owner_id(session: Session, spec: Mapping[str, Any]) -> int:
    return identity.get_team(session=session, slug=spec["owner"]).id


def _apply(
    template: Template, spec: dict[str, Any], owner_team_id: int, actor: Actor | None = None
) -> None:
    """Publish ``spec`` (``actor`` given) or, for a template never published, only show its
    fields while the definition waits for review (``spec`` stays empty: nothing runs)."""
    template.title = spec["title"]
    template.description = spec["description"]
    template.owner_team_id = owner_team_id
    template.request_type = spec["request_type"]
    template.approval = spec["approval"]
    template.allowed_teams = spec["allowed_teams"]
    if actor is not None:
        template.spec = spec
        template.published_by = actor.user_id
        template.published_at = utcnow()
        template.draft = None
        template.draft_submitted_by = None
        template.draft_submitted_at = None


def _submit_draft(
    session: Session, actor: Actor, template: Template, spec: dict[str, Any], action: str
) -> None:
    before = snapshot(template)
    template.draft = spec
    template.draft_submitted_by = actor.user_id
    template.draft_submitted_at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action=action,
        object_type=OBJECT_TYPE,
        object_id=template.name,
        before=before if action.endswith("update") else None,
        after={**snapshot(template), "privileged_actions": privileged_actions(spec)},
    )
    events.emit(
        session=session,
        type="selfservice.template.draft_submitted",
        subject=f"template:{template.name}",
        payload=TemplateDraftSubmitted(
            name=template.name,
            published_version=template.version,
            owner_team_id=template.owner_team_id,
            submitted_by=actor.user_id,
            privileged_actions=privileged_actions(spec),
        ),
    )


def create(
    *,
    session: Session,
    actor: Actor,
    definition: Mapping[str, Any],
    source: str = TemplateSource.API.value,
    source_path: str | None = None,
) -> Template:
    """Register a template (owner team members, SREs and admins). A member's template using a
    high-risk action is created unpublished (version 0), its definition a draft for review."""
    spec = validate(session=session, definition=definition)
    owner_team_id = _owner_id(session, spec)
    require_owned_write(actor, owner_team_id, "this team's templates")
    if get_by_name(session=session, name=spec["name"]) is not None:
        raise Conflict(f"a template named {spec['name']!r} exists already")
    if needs_review(actor, spec):
        template = Template(
            name=spec["name"], source=source, source_path=source_path, version=0, spec={}
        )
        _apply(template, spec, owner_team_id)
        session.add(template)
        session.flush()
        _submit_draft(session, actor, template, spec, "selfservice.template.draft_submit")
        return template
    template = Template(name=spec["name"], source=source, source_path=source_path, version=1)
    _apply(template, spec, owner_team_id, actor)
    session.add(template)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="selfservice.template.create",
        object_type=OBJECT_TYPE,
        object_id=template.name,
        after=snapshot(template),
    )
    _emit(session, "created", template)
    return template


def update(
    *,
    session: Session,
    actor: Actor,
    name: str,
    definition: Mapping[str, Any],
    source: str | None = None,
    source_path: str | None = None,
) -> Template:
    """Replace a template's definition; its version goes up when anything changed. A member's
    definition using a high-risk action becomes the draft instead; the published one runs on."""
    template = get(session=session, name=name)
    require_owned_write(actor, template.owner_team_id, "this template")
    spec = validate(session=session, definition=definition)
    if spec["name"] != template.name:
        raise ValidationFailed.one("name", "a template cannot be renamed; create a new one")
    owner_team_id = _owner_id(session, spec)
    require_owned_write(actor, owner_team_id, "the new owning team's templates")
    if spec == template.spec and owner_team_id == template.owner_team_id:
        return template
    if needs_review(actor, spec):
        if not is_published(template):  # nothing runs yet: show what waits for review
            _apply(template, spec, owner_team_id)
        if spec != template.draft:
            _submit_draft(session, actor, template, spec, "selfservice.template.draft_update")
        return template
    _publish(
        session,
        actor,
        template,
        spec,
        owner_team_id,
        "selfservice.template.update",
        source=(source, source_path) if source is not None else None,
    )
    return template


def _publish(
    session: Session,
    actor: Actor,
    template: Template,
    spec: dict[str, Any],
    owner_team_id: int,
    action: str,
    reason: str = "",
    *,
    source: tuple[str, str | None] | None = None,
) -> None:
    """Make ``spec`` the version that runs: the next version (from ``source``, a file sync's
    origin, when given), audited, told as created (a first publication) or updated."""
    before = snapshot(template)
    created = not is_published(template)
    _apply(template, spec, owner_team_id, actor)
    template.version += 1
    if source is not None:
        template.source, template.source_path = source
    session.flush()
    after = snapshot(template)
    audit.record(
        session=session,
        actor=actor,
        action=action,
        object_type=OBJECT_TYPE,
        object_id=template.name,
        before=before,
        after={**after, "reason": reason} if reason else after,
    )
    _emit(session, "created" if created else "updated", template)


def approve_draft(*, session: Session, actor: Actor, name: str, reason: str = "") -> Template:
    """Publish a template's draft (SREs and admins: the platform team): it becomes the version
    that runs. The draft is validated again (an action or team may have gone since)."""
    require_reviewer(actor)
    template = get(session=session, name=name)
    if template.draft is None:
        raise Conflict(f"template {name!r} has no draft waiting for review")
    spec = validate(session=session, definition=template.draft)
    owner_team_id = _owner_id(session, spec)
    _publish(
        session, actor, template, spec, owner_team_id, "selfservice.template.draft_approve", reason
    )
    return template


def reject_draft(*, session: Session, actor: Actor, name: str, reason: str) -> Template:
    """Discard a template's draft with the reason its author reads (SREs and admins)."""
    require_reviewer(actor)
    template = get(session=session, name=name)
    if template.draft is None:
        raise Conflict(f"template {name!r} has no draft waiting for review")
    if not reason.strip():
        raise ValidationFailed.one("reason", "say why, for the template's author")
    before = snapshot(template)
    submitted_by = template.draft_submitted_by
    template.draft = None
    template.draft_submitted_by = None
    template.draft_submitted_at = None
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="selfservice.template.draft_reject",
        object_type=OBJECT_TYPE,
        object_id=template.name,
        before=before,
        after={**snapshot(template), "reason": reason},
    )
    events.emit(
        session=session,
        type="selfservice.template.draft_rejected",
        subject=f"template:{template.name}",
        payload=TemplateDraftRejected(
            name=template.name,
            published_version=template.version,
            owner_team_id=template.owner_team_id,
            submitted_by=submitted_by,
            reason=reason,
        ),
    )
    return template


def source_name(template: Template) -> str | None:
    """Where a file-synced template came from, without the server's directories."""
    return Path(template.source_path).name if template.source_path else None


def delete(*, session: Session, actor: Actor, name: str) -> None:
    """Remove a template that was never run (runs keep their history)."""
    template = get(session=session, name=name)
    require_owned_write(actor, template.owner_team_id, "this template")
    if session.scalar(sa.select(Run.id).where(Run.template_id == template.id).limit(1)):
        raise Conflict(f"template {name!r} has runs; their history keeps it")
    before = snapshot(template)
    session.delete(template)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="selfservice.template.delete",
        object_type=OBJECT_TYPE,
        object_id=name,
        before=before,
    )
    events.emit(
        session=session,
        type="selfservice.template.deleted",
        subject=f"template:{name}",
        payload=TemplateDeleted(name=name),
    )


def _emit(session: Session, change: str, template: Template) -> None:
    events.emit(
        session=session,
        type=f"selfservice.template.{change}",
        subject=f"template:{template.name}",
        payload=TemplateChanged(
            name=template.name,
            version=template.version,
            title=template.title,
            owner_team_id=template.owner_team_id,
        ),
    )


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)  # field: "<file>: <path>"


def sync_directory(*, session: Session, actor: Actor, path: Path) -> SyncResult:
    """Create or update a template from every ``*.yaml`` in ``path``; report each file's errors.

    Each file is applied in a savepoint, so one bad file does not stop the others."""
    result = SyncResult()
    if not path.is_dir():
        raise ValidationFailed.one("templates_dir", f"{path} is not a directory")
    for file in sorted(path.glob("*.yaml")):
        try:
            with session.begin_nested():
                if file.stat().st_size > MAX_TEMPLATE_BYTES:
                    raise ValidationFailed.one("file", f"larger than {MAX_TEMPLATE_BYTES:,} bytes")
                text = file.read_text(encoding="utf-8")
                definition = parse_yaml(text)
                existing = get_by_name(session=session, name=str(definition.get("name")))
                if existing is None:
                    create(
                        session=session,
                        actor=actor,
                        definition=definition,
                        source=TemplateSource.FILE.value,
                        source_path=str(file),
                    )
                    result.created.append(str(definition["name"]))
                    continue
                version = existing.version
                update(
                    session=session,
                    actor=actor,
                    name=existing.name,
                    definition=definition,
                    source=TemplateSource.FILE.value,
                    source_path=str(file),
                )
                bucket = result.updated if existing.version != version else result.unchanged
                bucket.append(existing.name)
        except LamplighterError as exc:
            found = exc.errors or [FieldError("file", exc.detail)]
            result.errors.extend(FieldError(f"{file.name}: {e.field}", e.reason) for e in found)
        except (OSError, UnicodeDecodeError) as exc:
            result.errors.append(FieldError(f"{file.name}: file", f"cannot be read: {exc}"))
    return result
