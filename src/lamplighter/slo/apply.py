"""``slo apply``: Sloth ``prometheus/v1`` specs and OpenSLO v1 files into SLOs, and back out.

Each file is all or nothing, as in the catalog import: a file with any problem writes nothing,
and its problems name the file, the document (counted from 1) and the field; the other files
still apply. Applying the same files again changes nothing (``unchanged``). Every SLO written
remembers the file it came from (``origin``: the file's name as given), so ``prune`` deletes
the SLOs a file defined before and defines no more; SLOs made by hand (no origin) and those of
files not in the batch are never pruned. Every write goes through :mod:`lamplighter.slo.service`,
so ownership, audit and events apply as for a person's change:

    report = apply(session=s, actor=a, files=[("slos/checkout.yml", text)], prune=True)
    report.files[0].created  # ["service:default/checkout/availability"]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pydantic
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.catalog.backstage_yaml import load_all
from lamplighter.catalog.models import Entity
from lamplighter.core.authz import require_owned_write, require_writer
from lamplighter.core.context import Actor
from lamplighter.core.errors import LamplighterError, NotFound
from lamplighter.core.schemas import ReadModel, WriteModel
from lamplighter.slo import engine, openslo, service, sloth
from lamplighter.slo.definition import (
    OCCURRENCES,
    AlertingSettings,
    Budgeting,
    RatioSli,
    RawErrorRatioSli,
    Sli,
    SloDefinition,
    ThresholdSli,
    Timeslices,
    from_sloth,
)
from lamplighter.slo.models import Slo
from lamplighter.slo.schemas import SloIn

MAX_FILES = 1000
MAX_FILE_BYTES = sloth.MAX_FILE_BYTES
# Which parser reads a file: OpenSLO documents carry apiVersion (as list items in the Go SDK's
# files), Sloth specs a top-level version. A regex, not a YAML parse: a file is parsed once.
OPENSLO_HEADER = re.compile(r"(?m)^(?:-\s+)?apiVersion\s*:")
SLOTH_HEADER = re.compile(r"(?m)^version\s*:")
SLOTH_CRD = re.compile(r"(?m)^apiVersion\s*:\s*[\"']?sloth\.slok\.dev/")
SEPARATOR = re.compile(r"(?m)^---")


# -- what the API takes and answers --------------------------------------------------------------


class ApplyFileIn(WriteModel):
    name: str = Field(min_length=1, max_length=500, description="kept as the SLOs' origin")
    content: str = Field(max_length=MAX_FILE_BYTES, description="Sloth or OpenSLO YAML")


class ApplyRequest(WriteModel):
    files: list[ApplyFileIn] = Field(min_length=1, max_length=MAX_FILES)
    dry_run: bool = Field(default=False, description="report what would change; change nothing")
    prune: bool = Field(
        default=False, description="delete SLOs these files made before and define no more"
    )


class ApplyProblem(ReadModel):
    file: str
    document: int | None = Field(description="counted from 1; null for the whole file")
    field: str
    reason: str


class FileReport(ReadModel):
    file: str
    created: list[str] = Field(default_factory=list, description="entity ref / SLO name")
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list, description="pruned")
    problems: list[ApplyProblem] = Field(
        default_factory=list, description="any problem: nothing of this file was written"
    )


class ApplyReport(ReadModel):
    dry_run: bool
    prune: bool
    files: list[FileReport]
    created: int
    updated: int
    unchanged: int
    deleted: int
    refused_files: int


# -- reading files -------------------------------------------------------------------------------


@dataclass
class _Item:
    """One SLO a file defines, with where it is written."""

    definition: SloDefinition
    document: int
    base: str  # the SLO's own path in its document ("slos.0" in Sloth, "" in OpenSLO)
    fields: dict[str, str]  # SloIn field -> path in the document
    service_path: str


@dataclass
class _File:
    name: str
    items: list[_Item] = field(default_factory=list)
    problems: list[ApplyProblem] = field(default_factory=list)

    def problem(self, document: int | None, path: str, reason: str) -> None:
        self.problems.append(
            ApplyProblem(file=self.name, document=document, field=path, reason=reason)
        )


def _sloth_fields(base: str) -> dict[str, str]:
    return {
        "name": f"{base}.name",
        "objective": f"{base}.objective",
        "description": f"{base}.description",
        "labels": f"{base}.labels",
        "sli": f"{base}.sli",
        "alerting": f"{base}.alerting",
        "entity": "service",
    }


OPENSLO_FIELDS = {
    "name": "metadata.name",
    "objective": "spec.objectives.0.target",
    "description": "spec.description",
    "labels": "metadata.labels",
    "sli": "spec.indicator.spec",
    "alerting": "metadata.annotations",
    "window": "spec.timeWindow.0",
    "time_zone": "spec.timeWindow.0.calendar.timeZone",
    "budgeting": "spec.budgetingMethod",
    "slice_minutes": "spec.objectives.0.timeSliceWindow",
    "slice_threshold": "spec.objectives.0.timeSliceTarget",
    "entity": "spec.service",
}


def _read_sloth(parsed: _File, text: str) -> None:
    result = sloth.parse(text, source=parsed.name)
    for problem in result.problems:
        parsed.problem(problem.document, problem.path, problem.message)
    if parsed.problems:
        return
    if len(result.specs) == 1 and not SEPARATOR.search(text):
        indices = [1]
    else:  # which documents the specs came from (empty documents are counted, not kept)
        documents, _ = load_all(text)
        indices = [i for i, document in enumerate(documents, start=1) if document is not None]
    for index, spec in zip(indices, result.specs, strict=False):
        for position, definition in enumerate(from_sloth(spec)):
            base = f"slos.{position}"
            parsed.items.append(_Item(definition, index, base, _sloth_fields(base), "service"))


def _read_openslo(parsed: _File, text: str) -> None:
    result = openslo.parse(text, source=parsed.name)
    for problem in result.problems:
        parsed.problem(problem.document, problem.path, problem.message)
    if parsed.problems:
        return
    documents, _ = load_all(text)
    flat: list[Any] = []
    for document in documents:
        if document is not None:
            flat.extend(document if isinstance(document, list) else [document])
    indices = [
        i
        for i, doc in enumerate(flat, start=1)
        if isinstance(doc, dict) and doc.get("kind") == "SLO"
    ]
    # Without problems every SLO document gave its definition, in the order of the documents.
    for index, definition in zip(indices, result.definitions, strict=False):
        parsed.items.append(_Item(definition, index, "", OPENSLO_FIELDS, "spec.service"))


def read_file(name: str, text: str) -> _File:
    """Parse one file as Sloth or OpenSLO, by what its documents declare."""
    parsed = _File(name)
    if SLOTH_CRD.search(text):
        parsed.problem(
            1,
            "apiVersion",
            "Sloth's Kubernetes PrometheusServiceLevel is not supported: write its spec as a "
            'Sloth file with version: "prometheus/v1"',
        )
    elif OPENSLO_HEADER.search(text):
        _read_openslo(parsed, text)
    elif SLOTH_HEADER.search(text):
        _read_sloth(parsed, text)
    elif text.strip():
        parsed.problem(
            1,
            "apiVersion",
            f'required: an OpenSLO document (apiVersion: "{openslo.API_VERSION}") or a Sloth '
            f'spec (version: "{sloth.SPEC_VERSION}")',
        )
    return parsed


# -- definitions and what the service takes -----------------------------------------------------


def _percent(ratio: float) -> float:
    return float(Decimal(repr(float(ratio))) * 100)


class Unsupported(ValueError):
    """A definition Lamplighter cannot store as written; ``field`` is a :class:`SloIn` field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def slo_input(definition: SloDefinition, entity_ref: str) -> dict[str, Any]:
    """The definition as :class:`SloIn` fields, on the Prometheus source."""
    window = definition.window
    data: dict[str, Any] = {
        "entity": entity_ref,
        "name": definition.name,
        "description": definition.description,
        "objective": _percent(definition.objective_ratio),
        "time_zone": window.time_zone,
        "source": "prometheus",
        "alerting": {
            "page": definition.alerting.page_enabled,
            "ticket": definition.alerting.ticket_enabled,
            "labels": dict(definition.alerting.labels),
        },
        "labels": dict(definition.labels),
    }
    if definition.alerting.name:
        data["alerting"]["name"] = definition.alerting.name
    if window.kind is engine.WindowKind.ROLLING:
        data["window"] = f"{window.days}d"
    else:
        data["window"] = window.kind.value.replace("_", "-")
    budgeting = definition.budgeting
    if isinstance(budgeting, Timeslices):
        seconds = budgeting.slice_length.total_seconds()
        if seconds % 60 or seconds < 60:
            raise Unsupported(
                "slice_minutes",
                f"a time slice of {seconds:g} seconds is not supported: slices are whole minutes",
            )
        data["budgeting"] = "timeslices"
        data["slice_minutes"] = int(seconds // 60)
        data["slice_threshold"] = _percent(budgeting.slice_threshold_ratio)
    sli = definition.sli
    if isinstance(sli, RatioSli):
        data["sli"] = {"kind": "ratio", "total_query": sli.total_query}
        if sli.good_query is not None:
            data["sli"]["good_query"] = sli.good_query
        else:
            data["sli"]["bad_query"] = sli.bad_query
    elif isinstance(sli, RawErrorRatioSli):
        data["sli"] = {"kind": "raw", "error_ratio_query": sli.error_ratio_query}
    else:
        data["sli"] = {"kind": "threshold", "query": sli.query, "op": sli.op, "value": sli.value}
    return data


def service_name(entity: Entity) -> str:
    """How an export names the entity: the bare name of a service in the default namespace
    (what Sloth and OpenSLO files say), else its full reference."""
    if entity.kind == "service" and entity.namespace == "default":
        return entity.name
    return entity.ref


def definition_of(slo: Slo, entity: Entity) -> SloDefinition | None:
    """The stored SLO as a definition; None when its SLI has no query to write (built-in
    events, probes, and latency SLIs, whose query the rules exporter builds)."""
    if slo.source != "prometheus":
        return None
    kind = slo.sli.get("kind")
    sli: Sli
    if kind == "ratio":
        sli = RatioSli(
            total_query=slo.sli["total_query"],
            good_query=slo.sli.get("good_query"),
            bad_query=slo.sli.get("bad_query"),
        )
    elif kind == "raw":
        sli = RawErrorRatioSli(slo.sli["error_ratio_query"])
    elif kind == "threshold":
        sli = ThresholdSli(slo.sli["query"], slo.sli["op"], float(slo.sli["value"]))
    else:
        return None
    budgeting: Budgeting = OCCURRENCES
    if slo.budgeting == "timeslices" and slo.slice_seconds and slo.slice_threshold:
        budgeting = Timeslices(dt.timedelta(seconds=slo.slice_seconds), slo.slice_threshold)
    return SloDefinition(
        name=slo.name,
        service=service_name(entity),
        objective_ratio=slo.objective,
        window=service.window_of(slo),
        sli=sli,
        budgeting=budgeting,
        description=slo.description,
        alerting=AlertingSettings(
            page_enabled=bool(slo.alerting.get("page", True)),
            ticket_enabled=bool(slo.alerting.get("ticket", True)),
            labels=dict(slo.alerting.get("labels") or {}),
            name=slo.alerting.get("name") or None,
        ),
        labels=dict(slo.labels),
    )


def export_openslo(session: Session, slos: Sequence[Slo]) -> str:
    """The SLOs as OpenSLO v1 documents (``openslo.export``), each with an inline indicator.

    Only SLOs measured by a Prometheus query can be written: OpenSLO has no metric source for
    Lamplighter's built-in event counters or probes, and inventing one would give files no
    other tool reads. Those SLOs are skipped, and the file says so in a comment at its top
    (``# skipped: service:default/web/availability: built-in events have no query``), so that
    an export never silently loses an SLO. Reading the file back gives equal definitions.
    """
    entities: dict[int, Entity] = {}
    definitions: list[SloDefinition] = []
    skipped: list[str] = []
    for slo in slos:
        entity = entities.get(slo.entity_id)
        if entity is None:
            entity = entities[slo.entity_id] = service.entity_of(session, slo)
        definition = definition_of(slo, entity)
        if definition is None:
            why = {
                "events": "built-in events have no query",
                "probe": "probe results have no query",
            }.get(slo.source, "a latency SLI is written as Prometheus rules only")
            skipped.append(f"# skipped: {entity.ref}/{slo.name}: {why}\n")
        else:
            definitions.append(definition)
    return "".join(skipped) + (openslo.export(definitions) if definitions else "")


# -- applying ------------------------------------------------------------------------------------


class _Refused(Exception):
    """Roll the current file back."""


def _where(item: _Item, slo_field: str) -> str:
    head, _, rest = slo_field.partition(".")
    if head == "body":
        head, _, rest = rest.partition(".")
    mapped = item.fields.get(head)
    if mapped is None:
        return item.base or "spec"
    return mapped


def _pydantic_problems(parsed: _File, item: _Item, error: pydantic.ValidationError) -> None:
    for detail in error.errors():
        loc = [str(part) for part in detail["loc"]]
        path = _where(item, loc[0]) if loc else (item.base or "spec")
        message = str(detail["msg"]).removeprefix("Value error, ")
        parsed.problem(item.document, path, message)


def _service_problem(parsed: _File, item: _Item, error: LamplighterError) -> None:
    if error.errors:
        for field_error in error.errors:
            parsed.problem(item.document, _where(item, field_error.field), field_error.reason)
    else:
        parsed.problem(item.document, item.service_path, error.detail)


@dataclass
class _Batch:
    session: Session
    actor: Actor
    entities: dict[str, Entity | LamplighterError] = field(default_factory=dict)
    defined: dict[tuple[int, str], str] = field(default_factory=dict)  # -> file that defines it

    def entity(self, ref: str) -> Entity:
        found = self.entities.get(ref)
        if found is None:
            try:
                found = self._lookup(ref)
                require_owned_write(self.actor, found.owner_team_id, f"the SLOs of {found.ref}")
            except LamplighterError as error:
                found = error
            self.entities[ref] = found
        if isinstance(found, LamplighterError):
            raise found
        return found

    def _lookup(self, ref: str) -> Entity:
        """A Sloth or OpenSLO service is a catalog service first: ``web`` is
        ``service:default/web`` when there is one (an exact lookup, half the time of resolving
        a bare name across kinds, measured on 1,000 specs); else the name resolves as anywhere
        in Lamplighter (an API, a component…), with the closest names when it does not."""
        if ":" not in ref and "/" not in ref:
            try:
                return catalog.get_by_ref(
                    session=self.session, ref=f"service:default/{ref}", field="service"
                )
            except NotFound:
                pass
        return catalog.get_by_ref(
            session=self.session, ref=ref, field="service", kinds=service.ENTITY_KINDS
        )


def _plan(batch: _Batch, parsed: _File) -> list[tuple[_Item, Entity, SloIn]]:
    """Resolve the entities and check every SLO of the file before anything is written."""
    planned: list[tuple[_Item, Entity, SloIn]] = []
    in_file: dict[tuple[int, str], int] = {}
    for item in parsed.items:
        try:
            entity = batch.entity(item.definition.service)
        except LamplighterError as error:
            reason = error.errors[0].reason if error.errors else error.detail
            parsed.problem(item.document, item.service_path, reason)
            continue
        try:
            data = SloIn(**slo_input(item.definition, entity.ref))
        except Unsupported as error:
            parsed.problem(item.document, _where(item, error.field), str(error))
            continue
        except pydantic.ValidationError as error:
            _pydantic_problems(parsed, item, error)
            continue
        key = (entity.id, data.name)
        if key in in_file:
            parsed.problem(
                item.document,
                item.fields["name"],
                f"{entity.ref} has SLO {data.name!r} twice (document {in_file[key]} too)",
            )
            continue
        elsewhere = batch.defined.get(key)
        if elsewhere is not None:
            parsed.problem(
                item.document,
                item.fields["name"],
                f"{entity.ref}'s SLO {data.name!r} is defined in {elsewhere} too; it is kept there",
            )
            continue
        in_file[key] = item.document
        planned.append((item, entity, data))
    return planned


def _existing(session: Session, entity_ids: set[int], origin: str | None) -> list[Slo]:
    conditions: list[Any] = []
    if entity_ids:
        conditions.append(Slo.entity_id.in_(sorted(entity_ids)))
    if origin is not None:
        conditions.append(Slo.origin == origin)
    if not conditions:
        return []
    return list(session.scalars(sa.select(Slo).where(sa.or_(*conditions)).order_by(Slo.id)))


def _apply_file(batch: _Batch, parsed: _File, *, prune: bool) -> FileReport:
    report = FileReport(file=parsed.name)
    planned = _plan(batch, parsed) if not parsed.problems else []
    if parsed.problems:
        report.problems = parsed.problems
        return report
    session, actor = batch.session, batch.actor
    existing = _existing(
        session, {entity.id for _, entity, _ in planned}, parsed.name if prune else None
    )
    by_key = {(slo.entity_id, slo.name): slo for slo in existing}
    try:
        with session.begin_nested():
            for item, entity, data in planned:
                label = f"{entity.ref}/{data.name}"
                found = by_key.get((entity.id, data.name))
                try:
                    if found is None:
                        service.create(session=session, actor=actor, data=data, origin=parsed.name)
                        report.created.append(label)
                    else:
                        _, changed = service.update(
                            session=session,
                            actor=actor,
                            slo_id=found.id,
                            data=data,
                            origin=parsed.name,
                        )
                        (report.updated if changed else report.unchanged).append(label)
                except LamplighterError as error:
                    _service_problem(parsed, item, error)
            if prune and not parsed.problems:
                wanted = {(entity.id, data.name) for _, entity, data in planned}
                for slo in existing:
                    key = (slo.entity_id, slo.name)
                    if slo.origin != parsed.name or key in wanted or key in batch.defined:
                        continue
                    ref = service.entity_of(session, slo).ref
                    try:
                        service.delete(session=session, actor=actor, slo_id=slo.id)
                        report.deleted.append(f"{ref}/{slo.name}")
                    except LamplighterError as error:
                        parsed.problem(None, "", f"cannot prune {ref}/{slo.name}: {error.detail}")
            if parsed.problems:
                raise _Refused
    except _Refused:
        return FileReport(file=parsed.name, problems=parsed.problems)
    for _, entity, data in planned:
        batch.defined[(entity.id, data.name)] = parsed.name
    return report


def apply(
    *,
    session: Session,
    actor: Actor,
    files: Sequence[tuple[str, str]],
    prune: bool = False,
    dry_run: bool = False,
) -> ApplyReport:
    """Apply Sloth and OpenSLO files (name, text); a file with any problem writes nothing.

    ``dry_run`` computes the same report and rolls everything back before returning. A viewer
    is refused outright (``Forbidden``); anyone else's refusals are problems of their file."""
    require_writer(actor, "apply SLO files")
    batch = _Batch(session, actor)
    reports: list[FileReport] = []
    outer = session.begin_nested() if dry_run else None
    try:
        seen: set[str] = set()
        for name, text in files:
            if name in seen:
                reports.append(
                    FileReport(
                        file=name,
                        problems=[
                            ApplyProblem(
                                file=name, document=None, field="name", reason="given twice"
                            )
                        ],
                    )
                )
                continue
            seen.add(name)
            reports.append(_apply_file(batch, read_file(name, text), prune=prune))
    finally:
        if outer is not None:
            outer.rollback()
    return ApplyReport(
        dry_run=dry_run,
        prune=prune,
        files=reports,
        created=sum(len(r.created) for r in reports),
        updated=sum(len(r.updated) for r in reports),
        unchanged=sum(len(r.unchanged) for r in reports),
        deleted=sum(len(r.deleted) for r in reports),
        refused_files=sum(1 for r in reports if r.problems),
    )


# -- use cases the API and the CLI need besides the service's (candidates for service.py) ------
