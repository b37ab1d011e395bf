"""OpenSLO v1 documents: import into SloDefinitions, and export back.

Pure code, no I/O. ``parse`` reads a file of ``openslo/v1`` documents — separated by ``---``
or, as the OpenSLO Go SDK writes them, items of a top-level list — and returns the SLOs it can
import plus problems naming the file, the document (counted from 1 over every object in the
file, list items included) and the field. A document Lamplighter cannot represent is refused
with a problem that names what is unsupported; it never stops the others:

    result = parse(text, source="slos.yaml")
    result.definitions  # (SloDefinition(name="web-availability", ...),)
    text_again = export(result.definitions)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from lamplighter.catalog.backstage_yaml import load_all
from lamplighter.slo import engine
from lamplighter.slo.definition import (
    OCCURRENCES,
    THRESHOLD_OPS,
    AlertingSettings,
    Budgeting,
    RatioSli,
    RawErrorRatioSli,
    Sli,
    SloDefinition,
    ThresholdSli,
    Timeslices,
    percent_to_ratio,
)
from lamplighter.slo.sloth import Problem

API_VERSION = "openslo/v1"
MAX_FILE_BYTES = 1024 * 1024
KINDS = frozenset(
    {"Service", "SLI", "SLO", "AlertPolicy", "AlertCondition", "DataSource"}
    | {"AlertNotificationTarget"}
)
# OpenSLO durations: a count and one unit; m is minutes and M months.
DURATION = re.compile(r"^([1-9][0-9]*)([smhdwMQY])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Where Lamplighter keeps what OpenSLO has no field for, so an export reads back unchanged.
PAGE_ANNOTATION = "lamplighter.dev/page-alert"
TICKET_ANNOTATION = "lamplighter.dev/ticket-alert"
ALERT_LABELS_ANNOTATION = "lamplighter.dev/alert-labels"
# Any instant at local midnight on a Monday the 1st fits both calendar weeks and months.
CALENDAR_START = "2024-01-01 00:00:00"


@dataclass(frozen=True)
class OpenSloResult:
    """The SLOs of the documents that are right, and the problems of those that are not."""

    definitions: tuple[SloDefinition, ...]
    problems: tuple[Problem, ...]


class _Refused(Exception):
    """One problem that stops the current document (or indicator)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class _Indicator:
    """An SLI before it meets its objective: threshold SLIs take op and value from there."""

    sli: Sli | None  # None for a threshold metric
    threshold_query: str | None = None


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Refused(path, "required, a mapping")
    return value


def _text(parent: Mapping[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Refused(f"{path}.{key}" if path else key, "required, a non-empty string")
    return value


def _duration(value: Any, path: str) -> tuple[int, str]:
    match = DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise _Refused(path, f"{value!r} is not a duration like 30d, 1w or 1M")
    return int(match.group(1)), match.group(2)


def _query(source: Any, path: str) -> str:
    metric_source = _mapping(_mapping(source, path).get("metricSource"), f"{path}.metricSource")
    spec = metric_source.get("spec")
    query = spec.get("query") if isinstance(spec, dict) else None
    if not isinstance(query, str) or not query.strip():
        fields = ", ".join(sorted(spec)) if isinstance(spec, dict) else "none"
        kind = metric_source.get("type", "unknown")
        raise _Refused(
            f"{path}.metricSource.spec.query",
            f"metric source type {kind} has no query Lamplighter can read"
            f" (fields: {fields}); only sources with spec.query are supported",
        )
    return query


def _indicator(spec: Any, path: str) -> _Indicator:
    spec = _mapping(spec, path)
    ratio, threshold = spec.get("ratioMetric"), spec.get("thresholdMetric")
    if (ratio is None) == (threshold is None):
        raise _Refused(path, "needs exactly one of ratioMetric, thresholdMetric")
    if threshold is not None:
        return _Indicator(None, _query(threshold, f"{path}.thresholdMetric"))
    at = f"{path}.ratioMetric"
    ratio = _mapping(ratio, at)
    if "raw" in ratio:
        if ratio.get("rawType") != "failure":
            raise _Refused(
                f"{at}.rawType",
                f"raw ratio of type {ratio.get('rawType')!r} is not supported;"
                " only rawType failure (an error ratio) is",
            )
        return _Indicator(RawErrorRatioSli(_query(ratio["raw"], f"{at}.raw")))
    if "total" not in ratio:
        raise _Refused(f"{at}.total", "required")
    if ("good" in ratio) == ("bad" in ratio):
        raise _Refused(at, "needs exactly one of good, bad")
    total = _query(ratio["total"], f"{at}.total")
    if "good" in ratio:
        return _Indicator(
            RatioSli(total_query=total, good_query=_query(ratio["good"], f"{at}.good"))
        )
    return _Indicator(RatioSli(total_query=total, bad_query=_query(ratio["bad"], f"{at}.bad")))


def _window(spec: Mapping[str, Any]) -> engine.Window:
    windows = spec.get("timeWindow")
    if not isinstance(windows, list) or len(windows) != 1:
        raise _Refused("spec.timeWindow", "required, a list of exactly one window")
    at = "spec.timeWindow.0"
    window = _mapping(windows[0], at)
    count, unit = _duration(window.get("duration"), f"{at}.duration")
    if window.get("isRolling", False) is True:
        seconds = count * UNIT_SECONDS.get(unit, 0)
        days, rest = divmod(seconds, 86400)
        try:
            if rest or not days:
                raise ValueError
            return engine.Window.rolling(days)
        except ValueError:
            raise _Refused(
                f"{at}.duration",
                f"rolling window {count}{unit} is not supported: 7, 28 or 30 days"
                f" ({', '.join(f'{d}d' for d in sorted(engine.ROLLING_WINDOW_DAYS))})",
            ) from None
    calendar = _mapping(window.get("calendar"), f"{at}.calendar")
    start = calendar.get("startTime")
    if not isinstance(start, (str, dt.datetime)):
        raise _Refused(f"{at}.calendar.startTime", "required")
    time_zone = _text(calendar, "timeZone", f"{at}.calendar")
    if (count, unit) not in ((1, "w"), (1, "M")):
        raise _Refused(
            f"{at}.duration",
            f"calendar window {count}{unit} is not supported: 1w or 1M (m is minutes, M months)",
        )
    try:
        if unit == "w":
            return engine.Window.calendar_week(time_zone)
        return engine.Window.calendar_month(time_zone)
    except ValueError as error:
        raise _Refused(f"{at}.calendar.timeZone", str(error)) from None


def _ratio(objective: Mapping[str, Any], at: str) -> float:
    if "target" in objective:
        target = objective["target"]
        if not isinstance(target, (int, float)) or isinstance(target, bool):
            raise _Refused(f"{at}.target", "must be a number")
        if not 0 < target < 1:
            raise _Refused(f"{at}.target", f"must be between 0 and 1 (exclusive), not {target}")
        return float(target)
    if "targetPercent" in objective:
        percent = objective["targetPercent"]
        if not isinstance(percent, (int, float)) or isinstance(percent, bool):
            raise _Refused(f"{at}.targetPercent", "must be a number")
        if not 0 < percent < 100:
            raise _Refused(
                f"{at}.targetPercent", f"must be between 0 and 100 (exclusive), not {percent}"
            )
        return percent_to_ratio(percent)
    raise _Refused(f"{at}.target", "required (or targetPercent)")


def _budgeting(method: Any, objective: Mapping[str, Any], at: str) -> Budgeting:
    if method == "Occurrences":
        return OCCURRENCES
    if method not in ("Timeslices", "RatioTimeslices"):
        raise _Refused("spec.budgetingMethod", "must be Occurrences, Timeslices or RatioTimeslices")
    threshold = objective.get("timeSliceTarget")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise _Refused(f"{at}.timeSliceTarget", f"required for {method}, a number")
    if not 0 < threshold <= 1:
        raise _Refused(f"{at}.timeSliceTarget", f"must be in (0, 1], not {threshold}")
    count, unit = _duration(objective.get("timeSliceWindow"), f"{at}.timeSliceWindow")
    if unit not in UNIT_SECONDS:
        raise _Refused(f"{at}.timeSliceWindow", f"{count}{unit} is too long for a time slice")
    return Timeslices(dt.timedelta(seconds=count * UNIT_SECONDS[unit]), float(threshold))


def _labels(metadata: Mapping[str, Any]) -> dict[str, str]:
    # OpenSLO allows a list of values per label; a Lamplighter label has one, so join them.
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise _Refused("metadata.labels", "must be a mapping")
    result = {}
    for name, value in labels.items():
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            result[str(name)] = ",".join(value)
        elif isinstance(value, str):
            result[str(name)] = value
        else:
            raise _Refused(f"metadata.labels.{name}", "must be a string or a list of strings")
    return result


def _alerting(metadata: Mapping[str, Any]) -> AlertingSettings:
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise _Refused("metadata.annotations", "must be a mapping")

    def flag(key: str) -> bool:
        value = annotations.get(key, "true")
        if value not in ("true", "false"):
            raise _Refused(f"metadata.annotations.{key}", 'must be "true" or "false"')
        return bool(value == "true")

    labels: Any = {}
    if ALERT_LABELS_ANNOTATION in annotations:
        try:
            labels = json.loads(annotations[ALERT_LABELS_ANNOTATION])
        except (TypeError, ValueError):
            labels = None
        valid = isinstance(labels, dict) and all(
            isinstance(value, str) for value in labels.values()
        )
        if not valid:
            raise _Refused(
                f"metadata.annotations.{ALERT_LABELS_ANNOTATION}",
                "must be a JSON object of strings",
            )
    return AlertingSettings(flag(PAGE_ANNOTATION), flag(TICKET_ANNOTATION), labels)


def _slo(
    document: Mapping[str, Any],
    slis: Mapping[str, _Indicator | int],
    notes: list[Problem],
    *,
    source: str,
    index: int,
) -> SloDefinition:
    metadata = _mapping(document.get("metadata"), "metadata")
    name = _text(metadata, "name", "metadata")
    spec = _mapping(document.get("spec"), "spec")
    service = _text(spec, "service", "spec")
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise _Refused("spec.description", "must be a string")

    if ("indicator" in spec) == ("indicatorRef" in spec):
        raise _Refused("spec", "needs exactly one of indicator, indicatorRef")
    if "indicator" in spec:
        indicator = _indicator(
            _mapping(spec["indicator"], "spec.indicator").get("spec"), "spec.indicator.spec"
        )
    else:
        reference = spec["indicatorRef"]
        found = slis.get(reference) if isinstance(reference, str) else None
        if found is None:
            raise _Refused("spec.indicatorRef", f"no SLI named {reference!r} in this file")
        if isinstance(found, int):
            raise _Refused(
                "spec.indicatorRef",
                f"SLI {reference!r} cannot be imported (see document {found})",
            )
        indicator = found

    objectives = spec.get("objectives")
    if isinstance(objectives, list) and len(objectives) > 1:
        notes.append(
            Problem(
                source,
                index,
                "spec.objectives",
                f"{len(objectives)} objectives given; Lamplighter keeps one per SLO"
                " and imports only the first",
            )
        )
    window = _window(spec)
    if not isinstance(objectives, list) or not objectives:
        raise _Refused("spec.objectives", "required, a non-empty list")
    at = "spec.objectives.0"
    objective = _mapping(objectives[0], at)
    objective_ratio = _ratio(objective, at)
    budgeting = _budgeting(spec.get("budgetingMethod"), objective, at)

    sli = indicator.sli
    if sli is None:
        assert indicator.threshold_query is not None
        op, value = objective.get("op"), objective.get("value")
        if op not in THRESHOLD_OPS:
            raise _Refused(f"{at}.op", f"a threshold metric needs op, one of {THRESHOLD_OPS}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Refused(f"{at}.value", "a threshold metric needs a numeric value")
        sli = ThresholdSli(indicator.threshold_query, op, float(value))

    return SloDefinition(
        name=name,
        service=service,
        description=description,
        objective_ratio=objective_ratio,
        window=window,
        budgeting=budgeting,
        sli=sli,
        alerting=_alerting(metadata),
        labels=_labels(metadata),
    )


def _flatten(documents: Sequence[Any]) -> list[Any]:
    # The Go SDK writes a file as one YAML list of documents; count each item as a document.
    flat: list[Any] = []
    for document in documents:
        if document is None:  # an empty document, as after a trailing ---
            continue
        flat.extend(document if isinstance(document, list) else [document])
    return flat


def _check_header(document: Any) -> str:
    if not isinstance(document, dict):
        raise _Refused("", "an OpenSLO document must be a mapping")
    version = document.get("apiVersion")
    if version != API_VERSION:
        raise _Refused("apiVersion", f'must be "{API_VERSION}", not {version!r}')
    kind = document.get("kind")
    if kind not in KINDS:
        raise _Refused("kind", f"must be one of {', '.join(sorted(KINDS))}, not {kind!r}")
    _text(_mapping(document.get("metadata"), "metadata"), "name", "metadata")
    return str(kind)


def parse(text: str, *, source: str) -> OpenSloResult:
    """Import every SLO of an OpenSLO v1 file; a bad document does not stop the others."""
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        problem = Problem(source, 1, "", f"file is larger than {MAX_FILE_BYTES:,} bytes")
        return OpenSloResult((), (problem,))
    loaded, refused = load_all(text)
    documents = _flatten(loaded)
    problems: list[Problem] = []
    kinds: dict[int, str] = {}
    for index, document in enumerate(documents, start=1):
        try:
            kinds[index] = _check_header(document)
        except _Refused as refusal:
            problems.append(Problem(source, index, refusal.path, refusal.message))

    # SLIs first, so an SLO may refer to one defined further down; a broken one maps to its index.
    slis: dict[str, _Indicator | int] = {}
    for index, kind in kinds.items():
        if kind != "SLI":
            continue
        name = documents[index - 1]["metadata"]["name"]
        try:
            slis[name] = _indicator(documents[index - 1].get("spec"), "spec")
        except _Refused as refusal:
            slis[name] = index
            problems.append(Problem(source, index, refusal.path, refusal.message))

    definitions: list[SloDefinition] = []
    for index, kind in kinds.items():
        if kind != "SLO":
            continue
        # Notes say what an imported SLO lost; they do not refuse it.
        notes: list[Problem] = []
        try:
            definitions.append(_slo(documents[index - 1], slis, notes, source=source, index=index))
        except _Refused as refusal:
            notes.append(Problem(source, index, refusal.path, refusal.message))
        except ValueError as error:  # a rule of SloDefinition itself
            notes.append(Problem(source, index, "spec", str(error)))
        problems.extend(notes)
    if refused is not None:
        problems.append(Problem(source, len(documents) + 1, "", refused.reason))
    problems.sort(key=lambda problem: problem.document)
    return OpenSloResult(tuple(definitions), tuple(problems))


def _format_duration(length: dt.timedelta) -> str:
    seconds = int(length.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % UNIT_SECONDS[unit] == 0:
            return f"{seconds // UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def _metric(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _export_one(definition: SloDefinition) -> dict[str, Any]:
    sli = definition.sli
    objective: dict[str, Any] = {"target": definition.objective_ratio}
    indicator: dict[str, Any]
    if isinstance(sli, RatioSli):
        ratio: dict[str, Any] = {"counter": True}
        if sli.good_query is not None:
            ratio["good"] = _metric(sli.good_query)
        else:
            assert sli.bad_query is not None
            ratio["bad"] = _metric(sli.bad_query)
        ratio["total"] = _metric(sli.total_query)
        indicator = {"ratioMetric": ratio}
    elif isinstance(sli, RawErrorRatioSli):
        indicator = {"ratioMetric": {"rawType": "failure", "raw": _metric(sli.error_ratio_query)}}
    else:
        indicator = {"thresholdMetric": _metric(sli.query)}
        objective = {"op": sli.op, "value": sli.value, **objective}

    window = definition.window
    time_window: dict[str, Any]
    if window.kind is engine.WindowKind.ROLLING:
        time_window = {"duration": f"{window.days}d", "isRolling": True}
    else:
        duration = "1w" if window.kind is engine.WindowKind.CALENDAR_WEEK else "1M"
        calendar = {"startTime": CALENDAR_START, "timeZone": window.time_zone}
        time_window = {"duration": duration, "isRolling": False, "calendar": calendar}

    budgeting = definition.budgeting
    if isinstance(budgeting, Timeslices):
        method = "Timeslices"
        objective["timeSliceTarget"] = budgeting.slice_threshold_ratio
        objective["timeSliceWindow"] = _format_duration(budgeting.slice_length)
    else:
        method = "Occurrences"

    alerting = definition.alerting
    annotations = {
        PAGE_ANNOTATION: str(alerting.page_enabled).lower(),
        TICKET_ANNOTATION: str(alerting.ticket_enabled).lower(),
    }
    if alerting.labels:
        annotations[ALERT_LABELS_ANNOTATION] = json.dumps(alerting.labels, sort_keys=True)
    metadata: dict[str, Any] = {"name": definition.name}
    if definition.labels:
        metadata["labels"] = dict(definition.labels)
    metadata["annotations"] = annotations
    spec: dict[str, Any] = {"service": definition.service}
    if definition.description:
        spec["description"] = definition.description
    spec.update(
        {
            "indicator": {"metadata": {"name": f"{definition.name}-sli"}, "spec": indicator},
            "timeWindow": [time_window],
            "budgetingMethod": method,
            "objectives": [objective],
        }
    )
    return {"apiVersion": API_VERSION, "kind": "SLO", "metadata": metadata, "spec": spec}


class _Dumper(yaml.SafeDumper):
    pass


# Characters YAML 1.1 takes for line breaks besides "\n"; PyYAML folds them in other styles.
YAML_BREAKS = ("\r", "\x85", "\u2028", "\u2029")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style: str | None = "|" if "\n" in value else None
    if any(mark in value for mark in YAML_BREAKS):
        style = '"'  # YAML reads these as line breaks unless escaped in double quotes
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def export(definitions: Sequence[SloDefinition]) -> str:
    """Write definitions as OpenSLO v1 SLO documents, each with an inline indicator."""
    return yaml.dump_all(
        [_export_one(definition) for definition in definitions],
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=1_000_000,
        explicit_start=True,
    )
