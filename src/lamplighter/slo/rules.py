"""Prometheus rules for the stored SLOs measured through Prometheus, as Sloth writes them.

Each SLO of source ``prometheus`` becomes a Sloth ``prometheus/v1`` SLO (service = its catalog
entity's name) and goes through :func:`lamplighter.slo.sloth.rules`, so the series, labels and
alerts are exactly Sloth's (``slo:sli_error:ratio_rate5m``, ``sloth_id``…; 17 rules per SLO)
and existing Grafana dashboards and alert routes keep working:

    text = render(session)                 # one rules file for every Prometheus SLO
    files = export_files(session)          # {"default-checkout.rules.yml": "...", ...}

How Lamplighter's SLIs become Sloth's:

- ratio: ``bad_query`` is Sloth's ``error_query``; a ``good_query`` becomes
  ``(<total>) - (<good>)``;
- latency: ``total = sum(rate(<metric>_count{<selector>}[{{.window}}]))`` and
  ``error = (total) - (sum(rate(<metric>_bucket{<selector>,le="<threshold>"}[{{.window}}])))``;
- raw: as is; threshold: a raw error ratio, the share of minutes the condition failed:
  ``1 - avg_over_time(((<query>) <op> bool <value>)[{{.window}}:1m])``.

The window's days are the rolling days, 30 for a calendar month and 7 for a calendar week (the
burn-rate factors scale with them). Per-SLO factor overrides and ``min_events`` have no place
in Sloth's rules; Lamplighter's own evaluation applies them. SLOs on built-in events and probes
are measured inside Lamplighter and have no rules. An SLO whose query lacks ``{{.window}}``
cannot give a rate per window and is left out, named in a comment at the top of the file.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity
from lamplighter.slo import sloth
from lamplighter.slo.models import Slo
from lamplighter.slo.prometheus import OPERATORS, latency_queries
from lamplighter.slo.service import percent, window_days_of

MAX_RULES_PER_SLO = 17  # 8 SLI recordings, 7 meta recordings, page and ticket alerts


@dataclass(frozen=True)
class Skipped:
    entity: str
    slo: str
    reason: str
    file: str

    def __str__(self) -> str:
        return f"{self.entity} / {self.slo}: {self.reason}"


@dataclass
class Export:
    """Rule groups per entity, and the SLOs left out with the reason."""

    groups: dict[str, list[dict[str, Any]]]  # file name -> rule groups
    skipped: list[Skipped]


def alert_name(service: str, slo_name: str) -> str:
    """The alert's name (Sloth's ``alerting.name``): ``CheckoutAvailabilitySloBurnRate`` for
    SLO ``availability`` of ``checkout``. Names carry no dashes or dots: alert names are
    metric names."""
    words = re.split(r"[^A-Za-z0-9]+", f"{service} {slo_name}")
    return "".join(word[:1].upper() + word[1:] for word in words if word) + "SloBurnRate"


def file_name(entity: Entity) -> str:
    return f"{entity.namespace}-{entity.name}.rules.yml"


def sli_of(sli: dict[str, Any]) -> sloth.Sli:
    """The Sloth SLI for a stored Prometheus SLI (see the module doc)."""
    kind = sli.get("kind", "ratio")
    if kind == "ratio":
        total = sli["total_query"]
        error = sli.get("bad_query") or f"({total}) - ({sli['good_query']})"
        return sloth.Sli(events=sloth.EventsSli(error_query=error, total_query=total))
    if kind == "latency":
        good, total = latency_queries(sli, "{{.window}}")
        return sloth.Sli(
            events=sloth.EventsSli(error_query=f"({total}) - ({good})", total_query=total)
        )
    if kind == "raw":
        return sloth.Sli(raw=sloth.RawSli(error_ratio_query=sli["error_ratio_query"]))
    if kind == "threshold":
        op, value = OPERATORS[sli["op"]], sloth.number(float(sli["value"]))
        query = f"1 - avg_over_time((({sli['query']}) {op} bool {value})[{{{{.window}}}}:1m])"
        return sloth.Sli(raw=sloth.RawSli(error_ratio_query=query))
    raise ValueError(f"an SLI of kind {kind!r} has no Prometheus rules")


def sloth_slo_of(slo: Slo, service: str) -> sloth.SlothSlo:
    """The stored SLO as a Sloth SLO (raises ValueError naming what does not fit)."""
    alerting = slo.alerting or {}
    page, ticket = bool(alerting.get("page", True)), bool(alerting.get("ticket", True))
    return sloth.SlothSlo(
        name=slo.name,
        objective=float(percent(slo.objective) or 0.0),
        description=slo.description,
        labels={str(k): str(v) for k, v in (slo.labels or {}).items()},
        sli=sli_of(slo.sli),
        alerting=sloth.Alerting(
            name=str(alerting.get("name") or alert_name(service, slo.name)),
            labels={str(k): str(v) for k, v in (alerting.get("labels") or {}).items()},
            page_alert=sloth.Alert(disable=not page),
            ticket_alert=sloth.Alert(disable=not ticket),
        ),
    )


def _reason(error: Exception) -> str:
    if "{{.window}}" in str(error):
        return "its queries need Sloth's {{.window}} placeholder to give a rate per window"
    if isinstance(error, pydantic.ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in detail['loc'])}: "
            f"{detail['msg'].removeprefix('Value error, ')}"
            for detail in error.errors()
        )
    return str(error)


def _load(session: Session, slo_ids: Sequence[int] | None) -> list[tuple[Slo, Entity]]:
    # One statement for every SLO with its entity: 1,000 SLOs render in about 0.3 s, most of
    # it the YAML writer; a query per SLO would double that on PostgreSQL.
    query = (
        sa.select(Slo, Entity)
        .options(
            orm.load_only(
                Slo.id,
                Slo.entity_id,
                Slo.name,
                Slo.description,
                Slo.objective,
                Slo.window_kind,
                Slo.window_days,
                Slo.sli,
                Slo.alerting,
                Slo.labels,
                raiseload=True,
            ),
            orm.load_only(Entity.id, Entity.kind, Entity.namespace, Entity.name, raiseload=True),
        )
        .join(Entity, Entity.id == Slo.entity_id)
        .where(Slo.source == "prometheus")
        .order_by(Entity.namespace, Entity.name, Entity.kind, Slo.name)
    )
    if slo_ids is not None:
        query = query.where(Slo.id.in_(list(slo_ids)))
    return [(slo, entity) for slo, entity in session.execute(query).all()]


def build(rows: Iterable[tuple[Slo, Entity]]) -> Export:
    """Rule groups for these SLOs, by file; SLOs that cannot be written are listed."""
    rows = list(rows)
    # Sloth's ids are service-slo: two entities with one name (in other namespaces or kinds)
    # would share series; the second and later get their namespace and kind in the service.
    services: dict[int, str] = {}
    taken: dict[str, int] = {}
    for _, entity in rows:
        if entity.id in services:
            continue
        service = entity.name
        if taken.get(service, entity.id) != entity.id:
            service = f"{entity.namespace}.{entity.kind}.{entity.name}"
        taken.setdefault(service, entity.id)
        services[entity.id] = service
    by_spec: dict[tuple[int, int], list[sloth.SlothSlo]] = defaultdict(list)
    files: dict[int, str] = {}
    skipped: list[Skipped] = []
    for slo, entity in rows:
        service = services[entity.id]
        files[entity.id] = file_name(entity)
        try:
            converted = sloth_slo_of(slo, service)
        except (ValueError, KeyError) as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else _reason(exc)
            skipped.append(Skipped(entity.ref, slo.name, reason, files[entity.id]))
            continue
        by_spec[(entity.id, window_days_of(slo))].append(converted)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (entity_id, window_days), slos in by_spec.items():
        spec = sloth.SlothSpec(version="prometheus/v1", service=services[entity_id], slos=slos)
        groups[files[entity_id]].extend(sloth.rules(spec, window_days=window_days))
    return Export(groups=dict(groups), skipped=skipped)


# Plain scalars need no quotes when they cannot be read as anything but this string.
_PLAIN = re.compile(r"^[A-Za-z_](?:[A-Za-z0-9_:./-]*[A-Za-z0-9_./-])?$")
_NOT_PLAIN = frozenset(
    {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "~"}
)


@functools.lru_cache(maxsize=65536)  # label names and values repeat across rules and SLOs
def _scalar(value: Any, indent: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if "\n" in text and _literal_safe(text):
        # Sloth writes multi-line expressions as literal blocks; so do we.
        body = text.removesuffix("\n")
        chomp = "" if body != text else "-"
        lines = "\n".join(f"{indent}  {line}" if line else "" for line in body.split("\n"))
        return f"|{chomp}\n{lines}"
    if _PLAIN.match(text) and text.lower() not in _NOT_PLAIN:
        return text
    return json.dumps(text, ensure_ascii=not text.isprintable())


def _literal_safe(text: str) -> bool:
    lines = text.removesuffix("\n").split("\n")
    return (
        not text.endswith("\n\n")
        and not lines[0].startswith((" ", "\t"))
        and all(line.isprintable() for line in lines)
        and not any(line != line.rstrip(" ") and not line.strip() for line in lines)
    )


def _mapping(values: dict[str, Any], indent: str) -> list[str]:
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            if not value:
                lines.append(f"{indent}{_scalar(key, indent)}: {{}}")
                continue
            lines.append(f"{indent}{_scalar(key, indent)}:")
            lines.extend(_mapping(value, indent + "  "))
        else:
            lines.append(f"{indent}{_scalar(key, indent)}: {_scalar(value, indent)}")
    return lines


def dump(groups: Sequence[dict[str, Any]], skipped: Sequence[Skipped] = ()) -> str:
    """Write rule groups as a rules file, as :func:`sloth.dump` does but several times faster
    (PyYAML took 1.5 s for 1,000 SLOs, this takes about 0.2 s): the shape of a rules file is
    fixed (groups of rules of strings and string maps), so it is written directly; anything
    that could read back as something else is JSON-quoted, which YAML reads the same."""
    lines = [f"# left out: {item}" for item in skipped]
    if not groups:
        lines.append("groups: []")
        return "\n".join(lines) + "\n"
    lines.append("groups:")
    for group in groups:
        lines.append(f"- name: {_scalar(group['name'], '  ')}")
        lines.append("  rules:")
        for rule in group["rules"]:
            first = True
            for line in _mapping(rule, "    "):
                lines.append(("  - " + line[4:]) if first else line)
                first = False
    return "\n".join(lines) + "\n"


def render(session: Session, slo_ids: Sequence[int] | None = None) -> str:
    """One rules file (a YAML document of rule groups) for the Prometheus SLOs, or those of
    ``slo_ids``."""
    export = build(_load(session, slo_ids))
    return dump([group for groups in export.groups.values() for group in groups], export.skipped)


def export_files(session: Session) -> dict[str, str]:
    """A rules file per entity: ``<namespace>-<name>.rules.yml`` -> its text."""
    export = build(_load(session, None))
    names = sorted({*export.groups, *(item.file for item in export.skipped)})
    return {
        name: dump(
            export.groups.get(name, []), [item for item in export.skipped if item.file == name]
        )
        for name in names
    }
