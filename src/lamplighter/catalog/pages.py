"""Catalog pages: the list with search and filters, the entity page with its owner and its
dependency graph, create/edit/delete forms, ownership hygiene, and the team page's panel.

Thin adapters like the core pages: parse the form, call one service, commit once, redirect (303).
Everything works without JavaScript; HTMX only swaps the search results while typing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import markupsafe
import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lamplighter.catalog import graph, graph_svg, search, service
from lamplighter.catalog.models import Entity, Kind, Lifecycle
from lamplighter.core import identity, people
from lamplighter.core.authz import PRIVILEGED, can_write_owned, require_owned_write, require_writer
from lamplighter.core.deps import PageDep, SessionDep, SettingsDep
from lamplighter.core.errors import (
    Conflict,
    FieldError,
    LamplighterError,
    NotFound,
    ValidationFailed,
)
from lamplighter.core.models import Role, Team
from lamplighter.core.pagination import encode_cursor, page_of
from lamplighter.core.suggest_pages import FieldName, options_response, typed
from lamplighter.core.webui import (
    ENTITY_PANELS,
    FormState,
    PageRoute,
    QueryText,
    Viewer,
    ViewerDep,
    WriterDep,
    check_lengths,
    form_failed,
    is_htmx,
    page_links,
    redirect_after_post,
    render,
    render_panel,
    see_other,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)

KINDS = tuple(k.value for k in Kind)
LIFECYCLES = tuple(lc.value for lc in Lifecycle)
TIERS = ("1", "2", "3", "4")
LINK_TYPES = ("runbook", "dashboard", "repository", "docs", "other")
LINK_ROWS_MIN, LINK_ROWS_MAX = 3, 10
FORM_FIELDS = (
    "kind", "name", "namespace", "title", "description", "type", "owner", "accountable",
    "lifecycle", "tier", "tags", "system", "domain", "depends_on", "provides_apis",
    "consumes_apis", "cost_centre", "version",
)  # fmt: skip
LINK_FIELDS = tuple(
    f"link_{part}_{i}" for i in range(LINK_ROWS_MAX) for part in ("type", "url", "title")
)
FORM_LIMITS = {
    "kind": 16, "name": 63, "namespace": 63, "title": 200, "description": 10_000, "type": 63,
    "owner": 63, "accountable": 320, "lifecycle": 16, "tier": 2, "tags": 3_000, "system": 200,
    "domain": 200, "depends_on": 50_000, "provides_apis": 50_000, "consumes_apis": 50_000,
    "cost_centre": 100, "version": 63,
} | {f"link_url_{i}": 2000 for i in range(LINK_ROWS_MAX)} | {
    f"link_title_{i}": 200 for i in range(LINK_ROWS_MAX)
}  # fmt: skip
FILTERS = ("q", "kind", "type", "owner", "lifecycle", "tier", "tag")
GRAPH_DEPTHS = (1, 2)
# The blast radius goes as deep as `lamplighter catalog deps --reverse` may (graph.MAX_DEPTH),
# from the same default depth; a walk stops past BLAST_MAX_NODES entities, so that a deep radius
# over a big catalog stays a bounded page (the picture draws at most 8 a level, 60 expanded).
BLAST_DEFAULT_DEPTH = 3
BLAST_DEPTHS = tuple(range(1, graph.MAX_DEPTH + 1))
BLAST_MAX_NODES = 2_000
BLAST_PER_LEVEL = 8
RELATION_LABELS = {
    "depends_on": "Depends on",
    "dependency_of": "Dependency of",
    "provides_apis": "Provides APIs",
    "api_provided_by": "API provided by",
    "consumes_apis": "Consumes APIs",
    "api_consumed_by": "API consumed by",
    "part_of": "Part of",
    "has_part": "Has part",
}
SAFE_URL = re.compile(r"^https?://", re.IGNORECASE)


def _path_ref(kind: str, namespace: str, name: str) -> str:
    """The entity an address names: /catalog/{kind}/{namespace}/{name}."""
    return f"{kind}:{namespace}/{name}"


EntityRef = Annotated[str, Depends(_path_ref)]


def entity_url(entity: Entity) -> str:
    return f"/catalog/{entity.kind}/{entity.namespace}/{entity.name}"


def _split(text: str) -> list[str]:
    """One item per line or comma; blanks dropped."""
    return [part.strip() for part in re.split(r"[\n,]", text) if part.strip()]


# -- the list, with search and filters --------------------------------------------------------
def _list_filters(
    session: Session, values: Mapping[str, str], errors: dict[str, str], kinds: Sequence[str]
) -> service.ListFilters:
    """Turn the filter form into service filters; a wrong value becomes a message next to it."""
    owner_id = None
    if values["owner"]:
        try:
            owner_id = identity.get_team(session=session, slug=values["owner"]).id
        except NotFound as exc:
            errors["owner"] = exc.detail
    for name, allowed in (("kind", kinds), ("lifecycle", LIFECYCLES), ("tier", TIERS)):
        if values[name] and values[name] not in allowed:
            errors[name] = f"choose one of {', '.join(allowed)}"
    return service.ListFilters(
        kind=values["kind"] or None,
        type=values["type"] or None,
        owner_team_id=owner_id,
        lifecycle=values["lifecycle"] or None,
        tier=int(values["tier"]) if values["tier"] in TIERS else None,
        tag=values["tag"] or None,
    )


def _rows(session: Session, entities: Sequence[Entity]) -> list[tuple[Entity, Team | None]]:
    teams = people.teams_by_id(session=session, ids=[e.owner_team_id for e in entities])
    return [(e, teams.get(e.owner_team_id or 0)) for e in entities]


@router.get("/catalog")
def catalog_list(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    page: PageDep,
    q: QueryText = "",
    kind: QueryText = "",
    type: QueryText = "",
    owner: QueryText = "",
    lifecycle: QueryText = "",
    tier: QueryText = "",
    tag: QueryText = "",
) -> Response:
    values = dict(zip(FILTERS, (q, kind, type, owner, lifecycle, tier, tag), strict=True))
    values = {key: value.strip() for key, value in values.items()}
    form = FormState(values)
    kinds = [*KINDS, *service.other_kinds(session=session)]
    filters = _list_filters(session, values, form.errors, kinds)
    items: list[Entity] = []
    cursor = None
    if form.errors:  # nothing to show but the messages
        pass
    elif values["q"]:  # best match first: the cursor is an offset, as in the API
        offset = page.position or 0
        found = search.search(
            session=session, text=values["q"], filters=filters, offset=offset, limit=page.limit + 1
        )
        items = found[: page.limit]
        cursor = encode_cursor(offset + page.limit) if len(found) > page.limit else None
    else:
        rows = service.list_(
            session=session, filters=filters, after_id=page.position, limit=page.limit + 1
        )
        items, cursor = page_of(rows, page.limit, lambda e: e.id)
    context = {
        "form": form,
        "rows": _rows(session, items),
        "filtered": any(values.values()),
        "kinds": kinds,
        "lifecycles": LIFECYCLES,
        "tiers": TIERS,
        "teams": _team_choices(session, viewer, everyone=True, keep=values["owner"]),
        "may_register": viewer.actor.role != Role.VIEWER.value,
        **page_links(request, cursor, page.position),
    }
    # HTMX swaps only the results while typing; a history restore needs the whole page.
    fragment = is_htmx(request) and "hx-history-restore-request" not in request.headers
    template = "catalog/_results.html" if fragment else "catalog/list.html"
    status = 422 if form.errors else 200
    return render(request, template, context, viewer=viewer, status=status, fragment=fragment)


@router.get("/catalog/hygiene")
def hygiene_page(
    request: Request, session: SessionDep, viewer: ViewerDep, page: PageDep
) -> Response:
    found = service.hygiene(session=session, after_id=page.position, limit=page.limit + 1)
    items, cursor = page_of(found, page.limit, lambda pair: pair[0].id)
    entities = [entity for entity, _ in items]
    teams = people.teams_by_id(session=session, ids=[e.owner_team_id for e in entities])
    persons = people.users_by_id(session=session, ids=[e.accountable_user_id for e in entities])
    rows = [
        (e, why, teams.get(e.owner_team_id or 0), persons.get(e.accountable_user_id or 0))
        for e, why in items
    ]
    unreachable = service.people_hygiene(session=session, limit=OWNED_SHOWN + 1)
    context = {
        "rows": rows,
        "people": unreachable[:OWNED_SHOWN],
        "more_people": len(unreachable) > OWNED_SHOWN,
        **page_links(request, cursor, page.position),
    }
    return render(request, "catalog/hygiene.html", context, viewer=viewer)


@router.get("/catalog/suggest")
def suggest_entities(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    q: QueryText = "",
    kinds: QueryText = "",
    field: FieldName = "",
) -> Response:
    """A picker's options for what was typed: at most ten entities, each offered as its full
    reference and labelled with its title, kind and owning team (see templates/_picker.html)."""
    wanted = service.parse_kinds(kinds, field="query.kinds")
    found = service.suggest(session=session, text=typed(request, q, field), kinds=wanted)
    return options_response(
        (s.ref, " · ".join(part for part in (s.title, s.kind, s.owner) if part)) for s in found
    )


@router.get("/catalog/go")
def open_entity(
    request: Request, session: SessionDep, viewer: ViewerDep, ref: QueryText = ""
) -> Response:
    """Go to the entity a typed reference names; a bare name does when one entity has it.
    Otherwise the picker again, saying which entities come closest."""
    try:
        entity = service.get_by_ref(session=session, ref=ref, field="query.ref")
    except (ValidationFailed, NotFound) as exc:
        reason = exc.errors[0].reason if exc.errors else exc.detail
        context = {"value": ref.strip(), "error": reason}
        return render(request, "catalog/go.html", context, viewer=viewer, status=exc.status)
    return see_other(entity_url(entity))


# -- forms: create and edit ---------------------------------------------------------------------
async def _posted(request: Request) -> dict[str, str]:
    """The entity form's fields as sent (missing ones blank); FastAPI has parsed it already."""
    form = await request.form()
    return {
        name: value if isinstance(value := form.get(name, ""), str) else ""
        for name in (*FORM_FIELDS, *LINK_FIELDS)
    }


PostedForm = Annotated[dict[str, str], Depends(_posted)]


def _links(values: Mapping[str, str], errors: list[FieldError]) -> list[dict[str, str]]:
    """The filled link rows; only web addresses, since they become links on the page."""
    links = []
    for i in range(LINK_ROWS_MAX):
        url, title = values[f"link_url_{i}"].strip(), values[f"link_title_{i}"].strip()
        link_type = values[f"link_type_{i}"] or "other"
        if not url and not title:
            continue
        if not SAFE_URL.match(url):
            errors.append(FieldError(f"body.link_url_{i}", "enter a web address (https://…)"))
        elif link_type not in LINK_TYPES:
            errors.append(FieldError(f"body.link_type_{i}", f"choose one of {LINK_TYPES}"))
        else:
            links.append({"type": link_type, "url": url, "title": title})
    return links


def _parse(values: Mapping[str, str], *, creating: bool) -> tuple[dict[str, Any], list[FieldError]]:
    """The form as service input, and what is wrong with it that the service would not say.

    Those mistakes do not stop the service from checking the rest, so that every wrong field is
    named at once; the caller rolls back when there are any.
    """
    check_lengths(values, FORM_LIMITS)
    errors: list[FieldError] = []
    if not values["owner"].strip():
        errors.append(FieldError("body.owner", "choose the team that owns it"))
    if creating and not values["name"].strip():
        errors.append(FieldError("body.name", "enter a name"))
    choices = {"lifecycle": (LIFECYCLES, "production"), "tier": (TIERS, "3")}
    chosen = {name: values[name] or default for name, (_, default) in choices.items()}
    for name, (allowed, default) in choices.items():
        if chosen[name] not in allowed:
            errors.append(FieldError(f"body.{name}", f"choose one of {', '.join(allowed)}"))
            chosen[name] = default
    data: dict[str, Any] = {
        "title": values["title"].strip(),
        "description": values["description"].strip(),
        "type": values["type"].strip() or None,
        "owner": values["owner"].strip(),
        "accountable": values["accountable"].strip() or None,
        "lifecycle": chosen["lifecycle"],
        "tier": int(chosen["tier"]),
        "tags": _split(values["tags"]),
        "links": _links(values, errors),
        "system": values["system"].strip() or None,
        "domain": values["domain"].strip() or None,
        "depends_on": _split(values["depends_on"]),
        "provides_apis": _split(values["provides_apis"]),
        "consumes_apis": _split(values["consumes_apis"]),
        "cost_centre": values["cost_centre"].strip() or None,
        "version": values["version"].strip() or None,
    }
    if creating:
        data |= {"kind": values["kind"], "name": values["name"].strip()}
        data["namespace"] = values["namespace"].strip() or "default"
    return data, errors


def _refuse(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)


def _failed(
    values: dict[str, str], earlier: list[FieldError], exc: LamplighterError
) -> tuple[FormState, int]:
    """Every error next to its input (``body.depends_on.1`` belongs to ``depends_on``), the
    page's own message first when the service says something about the same field; and the
    status to answer with."""
    status = exc.status
    if exc.status in {409, 422} and (earlier or exc.errors):
        status = 422 if earlier else exc.status
        conflict = [FieldError("body.name", exc.detail)] if exc.status == 409 else []
        first: dict[str, FieldError] = {}
        for error in [*earlier, *exc.errors, *conflict]:
            first.setdefault(error.field, error)
        grouped: dict[str, list[str]] = {}
        for error in first.values():
            grouped.setdefault(".".join(error.field.split(".")[:2]), []).append(error.reason)
        errors = [FieldError(f, "; ".join(reasons)) for f, reasons in grouped.items()]
        exc = ValidationFailed(exc.detail, errors=errors)
    return form_failed(values, exc, conflict_field="name"), status


def _team_choices(
    session: Session, viewer: Viewer, *, everyone: bool, keep: str
) -> list[tuple[str, str]]:
    """(slug, name) of the teams to choose from: the viewer's own, or all of them for SREs and
    admins and for filters; ``keep`` stays a choice so that a wrong value can be shown."""
    mine = None if everyone or viewer.actor.role in PRIVILEGED else viewer.user.id
    teams = identity.list_teams(session=session, after_id=None, limit=500, user_id=mine)
    choices = [(team.slug, team.name) for team in teams]
    return choices if not keep or keep in dict(choices) else [(keep, keep), *choices]


def _form_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    form: FormState,
    *,
    entity: Entity | None = None,
    status: int = 200,
) -> Response:
    filled = [i for i in range(LINK_ROWS_MAX) if form.values.get(f"link_url_{i}")]
    rows = range(min(LINK_ROWS_MAX, max(LINK_ROWS_MIN, max(filled, default=-1) + 2)))
    for i in rows:  # empty rows suggest one link of each type
        form.values[f"link_type_{i}"] = form.values.get(f"link_type_{i}") or LINK_TYPES[min(i, 4)]
    context = {
        "form": form,
        "entity": entity,
        "teams": _team_choices(session, viewer, everyone=False, keep=form.values["owner"]),
        "kinds": KINDS,
        "lifecycles": LIFECYCLES,
        "tiers": TIERS,
        "link_types": LINK_TYPES,
        "link_rows": rows,
    }
    return render(request, "catalog/form.html", context, viewer=viewer, status=status)


def _values_of(session: Session, entity: Entity) -> dict[str, str]:
    """An entity as form values, for the edit form."""
    data = service.input_of(session, entity)
    values = dict.fromkeys((*FORM_FIELDS, *LINK_FIELDS), "")
    values |= {
        "kind": data.kind,
        "name": data.name,
        "namespace": data.namespace,
        "title": data.title,
        "description": data.description,
        "type": data.type or "",
        "owner": data.owner,
        "accountable": data.accountable or "",
        "lifecycle": data.lifecycle,
        "tier": str(data.tier),
        "tags": ", ".join(data.tags),
        "system": data.system or "",
        "domain": data.domain or "",
        "depends_on": "\n".join(data.depends_on),
        "provides_apis": "\n".join(data.provides_apis),
        "consumes_apis": "\n".join(data.consumes_apis),
        "cost_centre": data.cost_centre or "",
        "version": data.version or "",
    }
    for i, link in enumerate(list(data.links)[:LINK_ROWS_MAX]):
        values[f"link_type_{i}"] = str(link.get("type") or "other")
        values[f"link_url_{i}"] = str(link.get("url") or "")
        values[f"link_title_{i}"] = str(link.get("title") or "")
    return values


@router.get("/catalog/new")
def new_entity_form(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    owner: Annotated[str, Query(max_length=63)] = "",
    kind: Annotated[str, Query(max_length=16)] = "service",
) -> Response:
    require_writer(viewer.actor, "register catalog entities")
    values = dict.fromkeys((*FORM_FIELDS, *LINK_FIELDS), "")
    teams = [slug for slug, _ in _team_choices(session, viewer, everyone=False, keep="")]
    values |= {"kind": kind if kind in KINDS else "service", "namespace": "default"}
    values |= {"owner": owner if owner in teams else (teams[0] if len(teams) == 1 else "")}
    values |= {"lifecycle": "production", "tier": "3"}
    return _form_page(request, session, viewer, FormState(values))


@router.post("/catalog")
def create_entity(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: WriterDep,
    values: PostedForm,
) -> Response:
    errors: list[FieldError] = []
    try:
        data, errors = _parse(values, creating=True)
        entity = service.create(
            session=session,
            actor=viewer.actor,
            data=service.EntityInput(**data),
            name_rules=settings.catalog_name_rules,
        )
        _refuse(errors)
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        form, status = _failed(values, errors, exc)
        return _form_page(request, session, viewer, form, status=status)
    accountable = service.who_owns(session=session, ref=entity.ref).accountable
    who = accountable.display_name if accountable else "nobody"
    message = f"Registered {entity.ref}; {who} is accountable for it."
    return redirect_after_post(request, entity_url(entity), message, viewer)


def _writable(session: Session, viewer: Viewer, ref: str, *, editing: bool = True) -> Entity:
    entity = service.get_by_ref(session=session, ref=ref)
    require_owned_write(viewer.actor, entity.owner_team_id, entity.ref)
    if editing and entity.document is not None:
        raise Conflict(
            f"{entity.ref} is of a kind Lamplighter keeps as imported; change it in its file "
            f"({entity.location or 'unknown'}) and import that again"
        )
    return entity


@router.get("/catalog/{kind}/{namespace}/{name}/edit")
def edit_entity_form(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    ref: EntityRef,
) -> Response:
    entity = _writable(session, viewer, ref)
    form = FormState(_values_of(session, entity))
    return _form_page(request, session, viewer, form, entity=entity)


@router.post("/catalog/{kind}/{namespace}/{name}/edit")
def update_entity(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: WriterDep,
    values: PostedForm,
    ref: EntityRef,
) -> Response:
    errors: list[FieldError] = []
    try:
        changes, errors = _parse(values, creating=False)
        entity = service.update(
            session=session,
            actor=viewer.actor,
            ref=ref,
            changes=changes,
            name_rules=settings.catalog_name_rules,
        )
        _refuse(errors)
        session.commit()
    except LamplighterError as exc:
        session.rollback()
        if exc.status in {401, 403, 404}:
            raise
        current = service.get_by_ref(session=session, ref=ref)
        values |= {"kind": current.kind, "namespace": current.namespace, "name": current.name}
        form, status = _failed(values, errors, exc)
        return _form_page(request, session, viewer, form, entity=current, status=status)
    return redirect_after_post(
        request, entity_url(entity), f"Saved the changes to {entity.ref}.", viewer
    )


@router.get("/catalog/{kind}/{namespace}/{name}/delete")
def delete_entity_form(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    ref: EntityRef,
) -> Response:
    entity = _writable(session, viewer, ref, editing=False)
    relations = service.relations_of(session=session, entity_id=entity.id)
    context = {"entity": entity, "url": entity_url(entity), "relations": relations}
    return render(request, "catalog/delete.html", context, viewer=viewer)


@router.post("/catalog/{kind}/{namespace}/{name}/delete")
def delete_entity(
    request: Request,
    session: SessionDep,
    viewer: WriterDep,
    ref: EntityRef,
) -> Response:
    entity_ref = service.get_by_ref(session=session, ref=ref).ref
    service.delete(session=session, actor=viewer.actor, ref=ref)
    session.commit()
    return redirect_after_post(request, "/catalog", f"Deleted {entity_ref}.", viewer)


# -- one entity ----------------------------------------------------------------------------------
def _picture(
    session: Session, root: Entity, depth: int
) -> tuple[markupsafe.Markup | None, list[list[Entity]]]:
    """The dependency graph both ways, and its cycles as lists of entities."""
    picture = graph_svg.plan(
        root_id=root.id,
        dependencies=graph.traverse(session=session, root_id=root.id, depth=depth),
        dependents=graph.traverse(session=session, root_id=root.id, depth=depth, reverse=True),
    )
    found = graph.entities(session, picture.ids | {root.id})
    cycles = [[found[i] for i in cycle if i in found] for cycle in picture.cycles]
    if picture.empty:
        return None, cycles
    infos = _node_infos(found.values())
    caption = f"Dependency graph of {root.ref}: what it depends on, and what depends on it"
    return graph_svg.render(picture, infos, caption=caption), cycles


def _blast_radius(
    session: Session, root: Entity, depth: int, expand: Sequence[int]
) -> dict[str, Any]:
    """What breaks if ``root`` breaks: its dependents, transitively, to ``depth`` hops; the count
    at each hop, and the picture with each level past BLAST_PER_LEVEL folded into "+N more"."""
    walk = graph.traverse(
        session=session, root_id=root.id, depth=depth, reverse=True, max_nodes=BLAST_MAX_NODES
    )
    expanded = sorted({level for level in expand if 1 <= level <= depth})
    picture = graph_svg.plan(
        root_id=root.id,
        dependencies=graph.Traversal(root_id=root.id, reverse=False, depth=0),
        dependents=walk,
        max_per_column=BLAST_PER_LEVEL,
        expanded={-level for level in expanded},
    )
    svg = None
    if not picture.empty:
        found = graph.entities(session, picture.ids | {root.id})
        more_urls = {
            column: f"{entity_url(root)}?depth={depth}"
            + "".join(f"&expand={level}" for level in sorted({*expanded, -column}))
            + "#blast-radius"
            for column in picture.hidden
        }
        svg = graph_svg.render(
            picture,
            _node_infos(found.values()),
            caption=f"Blast radius of {root.ref}: what depends on it, up to {depth} hops",
            more_urls=more_urls,
            css_class="blast-graph",  # styled like dep-graph (catalog.css), told apart by tests
        )
    counts = graph.per_hop(walk)
    return {
        "depth": depth,
        "depths": BLAST_DEPTHS,
        "counts": counts,
        "total": sum(counts),
        "truncated": walk.truncated,
        "limit": BLAST_MAX_NODES,
        "svg": svg,
        "expanded": expanded,
    }


def _node_infos(entities: Iterable[Entity]) -> dict[int, graph_svg.NodeInfo]:
    return {
        e.id: graph_svg.NodeInfo(
            name=e.name,
            kind=e.kind + (f" · {e.type}" if e.type else ""),
            url=entity_url(e),
            tooltip=e.ref + (f" — {e.title}" if e.title else ""),
        )
        for e in entities
    }


FIELD_LABELS = {
    "owner": "Owner team",
    "accountable": "Accountable person",
    "cost_centre": "Cost centre",
    "spec_extra": "Other spec fields",
    "owner_ref": "Owner (as imported)",
} | {key: label for key, label in RELATION_LABELS.items()}
# How a value reads in the history table: the template renders each shape its own way.
VALUE_SHAPES = {"tags": "tags", "links": "links", "owner": "team"} | {
    key: "refs" for key in (*service.RELATION_FIELDS, "system", "domain")
}


@dataclass(frozen=True)
class FieldChange:
    """One changed field of a history entry: its label, how to show it, and both sides
    (``None`` for a side that did not have it)."""

    field: str
    label: str
    shape: str  # text, tags, links, refs, team, mapping
    before: Any
    after: Any


def _shape(key: str, values: Iterable[Any]) -> str:
    if key in VALUE_SHAPES:
        return VALUE_SHAPES[key]
    if any(isinstance(v, dict) for v in values):
        return "mapping"
    if any(isinstance(v, list) for v in values):
        return "list"
    return "text"


def _history(session: Session, ref: str) -> list[tuple[Any, list[FieldChange]]]:
    """The entity's audit entries, newest first, each with its changed fields as before/after
    rows, teams and people named (what the audit log keeps is their ids)."""
    entries = service.history(session=session, ref=ref, limit=50)
    ids = [
        value
        for entry in entries
        for side in entry.diff.values()
        for key, value in (side or {}).items()
        if key in {"owner_team_id", "accountable_user_id"} and isinstance(value, int)
    ]
    names: dict[str, tuple[str, dict[int, str]]] = {
        "owner_team_id": (
            "owner",
            {i: t.slug for i, t in people.teams_by_id(session=session, ids=ids).items()},
        ),
        "accountable_user_id": (
            "accountable",
            {i: u.email for i, u in people.users_by_id(session=session, ids=ids).items()},
        ),
    }
    rows = []
    for entry in entries:
        readable: dict[str, dict[str, Any]] = {}
        for side, values in entry.diff.items():
            values = dict(values or {})
            for key, (label, known) in names.items():
                if key in values:
                    value = values.pop(key)
                    values[label] = known.get(value, value) if isinstance(value, int) else value
            if "before" not in entry.diff:  # a creation: what was set, not every empty field
                values = {k: v for k, v in values.items() if v not in (None, "", [], {})}
            readable[side] = values
        before, after = readable.get("before", {}), readable.get("after", {})
        changes = [
            FieldChange(
                field=key,
                label=FIELD_LABELS.get(key, key.replace("_", " ").capitalize()),
                shape=_shape(key, (before.get(key), after.get(key))),
                before=before.get(key),
                after=after.get(key),
            )
            for key in dict.fromkeys([*before, *after])
        ]
        rows.append((entry, changes))
    return rows


@router.get("/catalog/{kind}/{namespace}/{name}")
def entity_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    ref: EntityRef,
    hops: Annotated[int, Query(ge=1, le=max(GRAPH_DEPTHS))] = 2,
    depth: Annotated[int, Query(ge=1, le=max(BLAST_DEPTHS))] = BLAST_DEFAULT_DEPTH,
    expand: Annotated[list[int], Query(max_length=len(BLAST_DEPTHS))] = [],  # noqa: B006
) -> Response:
    """One entity: who is responsible, its dependency graph (``hops``: 1 or 2 each way), its
    blast radius (``depth`` hops of dependents; ``expand``: levels shown whole), its history."""
    owner = service.who_owns(session=session, ref=ref)
    entity = owner.entity
    svg, cycles = _picture(session, entity, hops)
    relations = service.relations_of(session=session, entity_id=entity.id)
    context = {
        "entity": entity,
        "owner": owner,
        "url": entity_url(entity),
        "relations": [
            (key, label, relations[key])
            for key, label in RELATION_LABELS.items()
            if relations[key] or (svg and key in {"depends_on", "dependency_of"})
        ],
        "part_of": relations["part_of"],
        "graph_svg": svg,
        "cycles": cycles,
        "hops": hops,
        "graph_depths": GRAPH_DEPTHS,
        "blast": _blast_radius(session, entity, depth, expand),
        "history": _history(session, entity.ref),
        "links": [(link, bool(SAFE_URL.match(str(link.get("url", ""))))) for link in entity.links],
        "can_write": can_write_owned(viewer.actor, entity.owner_team_id),
        "can_edit": entity.document is None,  # kinds kept as imported change in their file
        "unresolved": [
            (RELATION_LABELS[service.RELATION_NAMES[u.type][0]], u.ref)
            for u in service.unresolved_of(session=session, entity_id=entity.id)
        ],
        "document_yaml": yaml.safe_dump(entity.document, sort_keys=False, allow_unicode=True)
        if entity.document is not None
        else None,
        # What the domains above the catalog know about it (who has access, …), each rendered
        # by its own domain.
        "panels": [
            html
            for panel in ENTITY_PANELS
            if (html := panel(request, session, entity, viewer)) is not None
        ],
    }
    return render(request, "catalog/entity.html", context, viewer=viewer)


# -- the team page's panel: what the team owns ----------------------------------------------------
OWNED_SHOWN = 50


def owned_panel(
    request: Request, session: Session, team: Team, viewer: Viewer
) -> markupsafe.Markup | None:
    """A section of the team page listing the first entities the team and the teams within it
    own, each with its owning team: a department's page answers what the department owns."""
    found = service.owned_by_subtree(
        session=session, team_id=team.id, after_id=None, limit=OWNED_SHOWN + 1
    )
    rows = _rows(session, found[:OWNED_SHOWN])
    context = {
        "team": team,
        "rows": rows,
        "within": any(owner is not None and owner.id != team.id for _, owner in rows),
        "more": len(found) > OWNED_SHOWN,
        "can_write": can_write_owned(viewer.actor, team.id),
    }
    return render_panel(request, viewer, "catalog/_team_panel.html", context)
