"""The actions that need no provider: access grants, catalog entries and hand-over tickets (calls
to internal HTTP APIs are in ``http_request``). Each acts through its domain's service, so what
it does is audited, emits events and obeys the same ownership rules as when a person does it by
hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Literal

from pydantic import Field

from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity, Provenance
from lamplighter.catalog.refs import KIND_ALIASES, Ref, parse_ref
from lamplighter.core import identity, people
from lamplighter.core.authz import can_write_owned
from lamplighter.core.context import Actor
from lamplighter.core.db import utcnow
from lamplighter.core.errors import (
    Conflict,
    Forbidden,
    LamplighterError,
    NotFound,
    ValidationFailed,
)
from lamplighter.selfservice import grants
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    Ownership,
    StepContext,
    action_error_from,
    parse_model,
    register,
)
from lamplighter.tickets import service as tickets
from lamplighter.tickets.models import OPEN_STATUSES, Status, Ticket

RUN_ANNOTATION = "lamplighter.dev/run"
RUN_LINK = "/selfservice/runs/{run_id}"


def _placeholder(text: str | None) -> bool:
    """Whether a dry-rendered input holds the output of a step that has not run."""
    return text is not None and "<output of step " in text


def _team_slug(ctx: StepContext) -> str | None:
    if ctx.requesting_team_id is None:
        return None
    team = people.find_team(session=ctx.session, team_id=ctx.requesting_team_id)
    return team.slug if team else None


# -- access.grant ----------------------------------------------------------------------------
class AccessGrantInput(ActionInput):
    entity: str = Field(description="Catalog reference, e.g. resource:default/orders-db.")
    grantee: str = Field(description="A user's email or a team's slug.")
    access: Literal["read", "write", "admin"] = "read"
    reason: str = Field(min_length=1, max_length=2000)
    duration_days: int = Field(default=30, ge=1, le=365)


class AccessGrantOutput(ActionOutput):
    grant_id: int
    status: str
    expires_at: dt.datetime


@register
class AccessGrantAction(Action):
    """Ask for access to a catalog resource; its accountable person (or team lead) decides.

    The grant is active at once when the requester may approve it themself, pending otherwise
    (the approvers find the request in their inbox). Compensation revokes it::

        - id: access
          action: access.grant
          input:
            entity: "resource:default/${{ parameters.database }}"
            grantee: "${{ parameters.team }}"
            access: write
            reason: "${{ parameters.reason }}"
            duration_days: 90
    """

    name = "access.grant"
    title = "Grant access to a resource"
    description = "Request read, write or admin access to a catalog entity for a user or a team."
    Input = AccessGrantInput
    Output = AccessGrantOutput
    ownership = Ownership(
        changes={
            "entity": "only through its owner's decision: the grant is live at once only when "
            "the requester may approve it themself, else the accountable person or lead decides",
        },
        creates="an access grant (pending or live)",
    )
    risk = "low"
    decided_by = "the resource's accountable person (or its owning team's lead)"

    def check(self, ctx: StepContext, data: Any) -> None:
        data = parse_model(AccessGrantInput, data)
        entity = None
        if not _placeholder(data.entity):
            try:
                entity = catalog.get_by_ref(session=ctx.session, ref=data.entity, default_kind=None)
            except (NotFound, ValidationFailed) as exc:
                reason = exc.errors[0].reason if exc.errors else exc.detail
                raise ActionError(f"entity: {reason}", field="entity") from exc
        if _placeholder(data.grantee):
            return
        grantee = self._grantee(ctx, data.grantee)
        if entity is not None:
            duplicate = grants.existing(
                session=ctx.session,
                entity_id=entity.id,
                grantee=grantee,
                access=data.access,
                now=utcnow(),
            )
            if duplicate is not None:
                raise ActionError(
                    f"entity: {data.grantee} already has or asked for {data.access} access to "
                    f"{entity.ref} (access grant #{duplicate}); see Access grants",
                    field="entity",
                )

    def awaiting(self, output: Any) -> str | None:
        result = parse_model(AccessGrantOutput, output)
        if result.status != grants.GrantStatus.PENDING.value:
            return None
        return f"the decision on access grant #{result.grant_id}"

    def run(self, ctx: StepContext, data: Any) -> AccessGrantOutput:
        data = parse_model(AccessGrantInput, data)
        session = ctx.session
        grant = grants.get_by_idempotency_key(session=session, key=ctx.key)
        if grant is None:
            try:
                entity = catalog.get_by_ref(session=session, ref=data.entity, default_kind=None)
            except (NotFound, ValidationFailed) as exc:
                raise ActionError(f"entity: {exc.detail}", field="entity") from exc
            grantee = self._grantee(ctx, data.grantee)
            try:
                grant = grants.request_grant(
                    session=session,
                    actor=ctx.actor,
                    entity_id=entity.id,
                    grantee=grantee,
                    access=data.access,
                    reason=data.reason,
                    duration=dt.timedelta(days=data.duration_days),
                    run_id=ctx.run_id,
                    idempotency_key=ctx.key,
                )
            except ValidationFailed as exc:
                error = action_error_from(exc)
                if error.field == "expires_at":
                    error.field = "duration_days"
                raise error from exc
            except Conflict as exc:  # the grantee has (or asked for) this access already
                raise action_error_from(exc, field="grantee") from exc
            except LamplighterError as exc:
                raise action_error_from(exc) from exc
            ctx.log(f"access grant #{grant.id} for {data.grantee} on {entity.ref}: {grant.status}")
        return AccessGrantOutput(
            grant_id=grant.id, status=grant.status, expires_at=grant.expires_at
        )

    @staticmethod
    def _grantee(ctx: StepContext, text: str) -> grants.Grantee:
        text = text.strip()
        if "@" in text:
            user = identity.get_user_by_email(session=ctx.session, email=text)
            if user is None or not user.is_active:
                raise ActionError(f"grantee: no active user with email {text}", field="grantee")
            return grants.Grantee(user_id=user.id)
        try:
            return grants.Grantee(team_id=identity.get_team(session=ctx.session, slug=text).id)
        except NotFound as exc:
            raise ActionError(
                f"grantee: no team with slug {text!r} (name a user by email)", field="grantee"
            ) from exc

    def compensate(self, ctx: StepContext, data: Any, output: Any | None) -> None:
        grant = grants.get_by_idempotency_key(session=ctx.session, key=ctx.key)
        if grant is None or grant.status not in grants.LIVE_STATUSES:
            return
        grants.revoke(
            session=ctx.session,
            actor=ctx.actor,
            grant_id=grant.id,
            reason=f"self-service run #{ctx.run_id} was rolled back",
        )
        ctx.log(f"access grant #{grant.id} revoked")


# -- catalog.register ------------------------------------------------------------------------
class LinkInput(ActionInput):
    url: str
    title: str = ""


class EntityToRegister(ActionInput):
    kind: str = "service"
    name: str
    namespace: str = "default"
    title: str = ""
    description: str = ""
    type: str | None = None
    lifecycle: str = "production"
    owner: str | None = Field(
        default=None, description="Owning team's slug; the requesting team when left out."
    )
    depends_on: list[str] = Field(default_factory=list)
    dependency_of: list[str] = Field(
        default_factory=list,
        description="Entities already in the catalog that depend on this one, e.g. the service "
        "a database is for; the requester must be allowed to change them.",
    )
    links: list[LinkInput] = Field(default_factory=list)

    def ref(self) -> Ref:
        kind = KIND_ALIASES.get(self.kind.strip().lower(), self.kind)
        return Ref(kind=kind, namespace=self.namespace.lower(), name=self.name)


class CatalogRegisterInput(ActionInput):
    entities: list[EntityToRegister] = Field(min_length=1, max_length=50)


class CatalogRegisterOutput(ActionOutput):
    refs: list[str]


@register
class CatalogRegisterAction(Action):
    """Register what the run created in the catalog, owned by the requesting team.

    Entities carry the annotation ``lamplighter.dev/run: <run key>``: a second attempt finds
    them and changes nothing, and compensation deletes only entities with it. A name already
    taken by anything else is refused before anything is created. Dependencies may name other
    entities of the same step, in any order. ``dependency_of`` names entities already in the
    catalog that depend on the new one: each gets a ``dependsOn`` relation to it through a
    catalog update, so the requester must be allowed to change them; compensation removes
    those relations again before deleting the new entity::

        - id: register
          action: catalog.register
          input:
            entities:
              - kind: resource
                name: "${{ parameters.name }}-db"
                type: database
              - name: "${{ parameters.name }}"
                type: web-service
                depends_on: ["resource:${{ parameters.name }}-db"]
                links: [{url: "${{ steps.repo.output.url }}", title: Repository}]
              - kind: resource
                name: "${{ parameters.name }}-cache"
                dependency_of: ["service:${{ parameters.caller }}"]
    """

    name = "catalog.register"
    title = "Register in the catalog"
    description = "Create catalog entities owned by the requesting team, with their dependencies."
    Input = CatalogRegisterInput
    Output = CatalogRegisterOutput
    ownership = Ownership(
        changes={
            "entities.*.dependency_of": "each dependent entity: its owning team, SREs and admins",
        },
        creates="catalog entities owned by a team the requester may write for; a reference "
        "already taken by an entity this step did not register is refused",
    )
    risk = "low"

    def check(self, ctx: StepContext, data: Any) -> None:
        """Names free and dependents present, before the run is queued."""
        data = parse_model(CatalogRegisterInput, data)
        for index, spec in enumerate(data.entities):
            if _placeholder(spec.name) or _placeholder(spec.namespace):
                continue
            ref = spec.ref()
            existing = catalog.find(ctx.session, ref)
            if existing is not None and existing.annotations.get(RUN_ANNOTATION) != ctx.key:
                raise ActionError(
                    f"entities.{index}.name: {ref} exists already in the catalog; choose "
                    "another name",
                    field=f"entities.{index}.name",
                )
            owner = spec.owner
            if owner and not _placeholder(owner):
                if people.find_team_by_slug(session=ctx.session, slug=owner) is None:
                    raise ActionError(
                        f"entities.{index}.owner: no team {owner!r}",
                        field=f"entities.{index}.owner",
                    )
            elif owner is None and ctx.requesting_team_id is None:
                raise ActionError(
                    f"entities.{index}.owner: choose the team that will own {ref.name}; "
                    "you are running this for no team",
                    field=f"entities.{index}.owner",
                )
            for position, text in enumerate(spec.dependency_of):
                if _placeholder(text):
                    continue
                field = f"entities.{index}.dependency_of.{position}"
                try:
                    dependent_ref = parse_ref(
                        text, default_kind=None, default_namespace=spec.namespace, field=field
                    )
                except ValidationFailed as exc:
                    raise action_error_from(exc) from exc
                dependent = catalog.find(ctx.session, dependent_ref)
                if dependent is None:
                    raise ActionError(f"{field}: no catalog entity {dependent_ref}", field=field)
                ctx.require_may_change(dependent, field=field)

    def run(self, ctx: StepContext, data: Any) -> CatalogRegisterOutput:
        data = parse_model(CatalogRegisterInput, data)
        session = ctx.session
        refs = [spec.ref() for spec in data.entities]
        seen: dict[tuple[str, str, str], int] = {}
        to_create: dict[int, EntityToRegister] = {}
        for index, (spec, ref) in enumerate(zip(data.entities, refs, strict=True)):
            if ref.key in seen:
                raise ActionError(
                    f"entities.{index}.name: {ref} is listed twice", field=f"entities.{index}.name"
                )
            seen[ref.key] = index
            existing = catalog.find(session, ref)
            if existing is None:
                to_create[index] = spec
            elif existing.annotations.get(RUN_ANNOTATION) != ctx.key:
                raise ActionError(
                    f"entities.{index}.name: {ref} exists already in the catalog; choose another "
                    "name",
                    field=f"entities.{index}.name",
                )
        dependents = self._dependents(ctx, data.entities, refs, seen)
        waiting = {
            index: self._batch_dependencies(spec, index, seen) for index, spec in to_create.items()
        }
        while waiting:
            ready = [index for index, needs in waiting.items() if not needs & waiting.keys()]
            if not ready:
                first = min(waiting)
                raise ActionError(
                    f"entities.{first}.depends_on: the entities depend on each other in a cycle",
                    field=f"entities.{first}.depends_on",
                )
            for index in ready:
                self._create(ctx, to_create[index], index)
                del waiting[index]
        for index, field, dependent in dependents:
            self._add_dependency(ctx, dependent, refs[index], field)
        return CatalogRegisterOutput(refs=[str(ref) for ref in refs])

    @staticmethod
    def _dependents(
        ctx: StepContext,
        specs: list[EntityToRegister],
        refs: list[Ref],
        batch: dict[tuple[str, str, str], int],
    ) -> list[tuple[int, str, Entity]]:
        """Resolve every ``dependency_of`` and check the requester may change it, before
        anything is created: (entry index, input field, the existing entity)."""
        found: list[tuple[int, str, Entity]] = []
        for index, spec in enumerate(specs):
            ours = catalog.find(ctx.session, refs[index])
            for position, text in enumerate(spec.dependency_of):
                field = f"entities.{index}.dependency_of.{position}"
                try:
                    ref = parse_ref(
                        text,
                        default_kind=None,
                        default_namespace=spec.namespace.lower(),
                        field=field,
                    )
                except ValidationFailed as exc:
                    raise action_error_from(exc) from exc
                if ref.key in batch:
                    raise ActionError(
                        f"{field}: {ref} is registered by this step; list the dependency in its "
                        "depends_on instead",
                        field=field,
                    )
                dependent = catalog.find(ctx.session, ref)
                if dependent is None:
                    raise ActionError(f"{field}: no catalog entity {ref}", field=field)
                if ours is not None and _depends_on(ctx, dependent, ours):
                    continue  # a previous attempt added it
                ctx.require_may_change(dependent, field=field)
                found.append((index, field, dependent))
        return found

    @staticmethod
    def _add_dependency(ctx: StepContext, dependent: Entity, target_ref: Ref, field: str) -> None:
        target = catalog.find(ctx.session, target_ref)
        assert target is not None  # created (or found) just before
        if _depends_on(ctx, dependent, target):
            return
        current = catalog.relations_of(session=ctx.session, entity_id=dependent.id)["depends_on"]
        try:
            # Only the relations change, so the naming rules (which may postdate the
            # entity's name) are not applied again.
            catalog.update(
                session=ctx.session,
                actor=ctx.actor,
                ref=dependent.ref,
                changes={"depends_on": [*(e.ref for e in current), target.ref]},
            )
        except LamplighterError as exc:
            raise ActionError(
                f"{field}: {dependent.ref} could not be changed: {exc.detail}", field=field
            ) from exc
        ctx.log(f"{dependent.ref} now depends on {target.ref}")

    @staticmethod
    def _remove_dependencies(ctx: StepContext, spec: EntityToRegister, target: Entity) -> None:
        """Undo ``dependency_of``: deleting the target drops the relation rows by cascade, but
        the dependent's audit trail and content hash would still name it."""
        for position, text in enumerate(spec.dependency_of):
            try:
                ref = parse_ref(
                    text,
                    default_kind=None,
                    default_namespace=spec.namespace.lower(),
                    field=f"dependency_of.{position}",
                )
            except ValidationFailed:
                continue  # run refused it before adding anything
            dependent = catalog.find(ctx.session, ref)
            if dependent is None or not _depends_on(ctx, dependent, target):
                continue
            current = catalog.relations_of(session=ctx.session, entity_id=dependent.id)
            # The requester may have left the dependent's team since; undoing the run's own
            # change is then the platform's job.
            actor = (
                ctx.actor
                if can_write_owned(ctx.actor, dependent.owner_team_id)
                else Actor.system(f"self-service run #{ctx.run_id}")
            )
            try:
                catalog.update(
                    session=ctx.session,
                    actor=actor,
                    ref=dependent.ref,
                    changes={
                        "depends_on": [e.ref for e in current["depends_on"] if e.id != target.id]
                    },
                )
            except ValidationFailed as exc:  # e.g. its accountable person left the team
                ctx.log(
                    f"{dependent.ref} could not be changed ({exc.detail}); its relation to "
                    f"{target.ref} goes with {target.ref}"
                )
                continue
            ctx.log(f"{dependent.ref} no longer depends on {target.ref}")

    @staticmethod
    def _batch_dependencies(
        spec: EntityToRegister, index: int, batch: dict[tuple[str, str, str], int]
    ) -> set[int]:
        """Which other entries of this step an entry depends on (they are created first)."""
        needs = set()
        for position, text in enumerate(spec.depends_on):
            try:
                ref = parse_ref(
                    text,
                    default_kind=None,
                    default_namespace=spec.namespace.lower(),
                    field=f"entities.{index}.depends_on.{position}",
                )
            except ValidationFailed as exc:
                raise action_error_from(exc) from exc
            if ref.key in batch and batch[ref.key] != index:
                needs.add(batch[ref.key])
        return needs

    @staticmethod
    def _create(ctx: StepContext, spec: EntityToRegister, index: int) -> None:
        owner = spec.owner or _team_slug(ctx)
        if owner is None:
            raise ActionError(
                f"entities.{index}.owner: name the owning team; this run has no requesting team",
                field=f"entities.{index}.owner",
            )
        entity_input = catalog.EntityInput(
            kind=spec.ref().kind,
            name=spec.name,
            namespace=spec.namespace,
            owner=owner,
            title=spec.title,
            description=spec.description,
            type=spec.type,
            lifecycle=spec.lifecycle,
            annotations={RUN_ANNOTATION: ctx.key},
            links=[link.model_dump() for link in spec.links],
            depends_on=list(spec.depends_on),
        )
        try:
            entity = catalog.create(
                session=ctx.session,
                actor=ctx.actor,
                data=entity_input,
                name_rules=ctx.settings.catalog_name_rules,
                provenance=Provenance.TEMPLATE.value,
            )
        except Forbidden as exc:
            raise action_error_from(exc, field=f"entities.{index}.owner") from exc
        except LamplighterError as exc:
            raise action_error_from(
                exc, prefix=f"entities.{index}.", field=f"entities.{index}.name"
            ) from exc
        ctx.log(f"registered {entity.ref}, owned by {owner}")

    def compensate(self, ctx: StepContext, data: Any, output: Any | None) -> None:
        data = parse_model(CatalogRegisterInput, data)
        for spec in reversed(data.entities):  # dependents before what they depend on
            entity = catalog.find(ctx.session, spec.ref())
            if entity is None or entity.annotations.get(RUN_ANNOTATION) != ctx.key:
                continue  # never created, or not ours: leave it
            self._remove_dependencies(ctx, spec, entity)
            ref = entity.ref
            catalog.delete(session=ctx.session, actor=ctx.actor, ref=ref)
            ctx.log(f"removed {ref} from the catalog")


def _depends_on(ctx: StepContext, source: Entity, target: Entity) -> bool:
    outgoing = catalog.relations_of(session=ctx.session, entity_id=source.id)["depends_on"]
    return any(entity.id == target.id for entity in outgoing)


# -- ticket.create ---------------------------------------------------------------------------
class TicketCreateInput(ActionInput):
    type: str = Field(description="Request type slug, e.g. access-request.")
    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    priority: Literal["P1", "P2", "P3", "P4"] = "P3"
    entity: str | None = Field(default=None, description="Catalog reference the work is about.")


class TicketCreateOutput(ActionOutput):
    ticket_id: int
    status: str
    link: str


def _run_label(ctx: StepContext) -> str:
    label = f"run:{ctx.run_id}-{ctx.step_id}".lower()
    if len(label) > 50 or any(c.isspace() for c in label):  # ticket labels are short words
        label = f"run:{ctx.run_id}-" + hashlib.sha256(ctx.step_id.encode()).hexdigest()[:16]
    return label


def _ticket_of(ctx: StepContext) -> Ticket | None:
    """The hand-over ticket a previous attempt of this step opened (ignoring rolled-back ones)."""
    label = _run_label(ctx)
    found = tickets.queue(
        session=ctx.session,
        filters=tickets.QueueFilters(label=label),
        after_id=None,
        limit=50,
    )
    for ticket in found:
        if label in ticket.labels and ticket.status != Status.REJECTED.value:
            return ticket
    return None


@register
class TicketCreateAction(Action):
    """Hand over to a person where automation stops: a ticket in the triage queue.

    The ticket names the run it came from and carries the label ``run:<run>-<step>``, so a
    second attempt finds it instead of opening another. Compensation rejects it with a note::

        - id: firewall
          action: ticket.create
          input:
            type: network-change
            title: "Open port 5432 from ${{ parameters.name }} to the reporting cluster"
            description: "Needed by the new service; see the run for details."
    """

    name = "ticket.create"
    title = "Hand over to a person"
    description = "Open a ticket for the part of the work that needs a person."
    Input = TicketCreateInput
    Output = TicketCreateOutput
    ownership = Ownership(
        creates="a ticket in the triage queue; entity is only referenced (anyone may file a "
        "ticket about any entity), never changed",
    )
    risk = "low"

    def run(self, ctx: StepContext, data: Any) -> TicketCreateOutput:
        data = parse_model(TicketCreateInput, data)
        ticket = _ticket_of(ctx)
        if ticket is None:
            link = RUN_LINK.format(run_id=ctx.run_id)
            reference = f"Opened by self-service run #{ctx.run_id}, step `{ctx.step_id}`: {link}"
            description = f"{data.description.rstrip()}\n\n{reference}".lstrip()
            try:
                ticket = tickets.create(
                    session=ctx.session,
                    actor=ctx.actor,
                    data=tickets.TicketInput(
                        type=data.type,
                        title=data.title,
                        description=description,
                        priority=data.priority,
                        requesting_team=_team_slug(ctx),
                        entity=data.entity,
                        labels=[_run_label(ctx), "self-service"],
                    ),
                )
            except LamplighterError as exc:
                raise action_error_from(exc) from exc
            ctx.log(f"ticket #{ticket.id} opened: {ticket.title}")
        return TicketCreateOutput(
            ticket_id=ticket.id, status=ticket.status, link=f"/tickets/{ticket.id}"
        )

    def compensate(self, ctx: StepContext, data: Any, output: Any | None) -> None:
        ticket = _ticket_of(ctx)
        if ticket is None:
            return
        if ticket.status not in {status.value for status in OPEN_STATUSES}:
            ctx.log(f"ticket #{ticket.id} is {ticket.status} already; left as it is")
            return
        # The requester may not be in the team the ticket is assigned to; undoing the run's own
        # hand-over is the platform's job.
        actor = (
            ctx.actor
            if tickets.may_work_on(ctx.session, ctx.actor, ticket)
            else Actor.system(f"self-service run #{ctx.run_id}")
        )
        tickets.transition(
            session=ctx.session,
            actor=actor,
            ticket_id=ticket.id,
            to_status=Status.REJECTED.value,
            note=f"Self-service run #{ctx.run_id} was rolled back; this hand-over is no longer "
            "needed.",
        )
        ctx.log(f"ticket #{ticket.id} rejected")
