"""The SLO form: its fields as SloIn's, and SloIn's errors next to the form's fields.

The page routes (``pages.py``) render and submit it; this module only reads and checks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import pydantic
from fastapi import Depends, Request

from lamplighter.catalog.models import Entity
from lamplighter.core.errors import FieldError, ValidationFailed
from lamplighter.core.webui import check_lengths
from lamplighter.slo import service
from lamplighter.slo.models import Slo
from lamplighter.slo.schemas import SloIn

FORM_FIELDS = (
    "entity", "name", "description", "objective", "window", "time_zone", "source", "sli_kind",
    "query_kind", "good_query", "total_query", "metric", "threshold_s", "selector",
    "probe_url", "interval_s", "timeout_s", "expected_status", "budgeting", "slice_minutes",
    "slice_threshold", "page", "ticket", "min_events",
)  # fmt: skip
FORM_LIMITS = {
    "entity": 300, "name": 63, "description": 2000, "objective": 20, "window": 20,
    "time_zone": 64, "source": 20, "sli_kind": 20, "query_kind": 10, "good_query": 4000,
    "total_query": 4000, "metric": 200, "threshold_s": 20, "selector": 1000,
    "probe_url": 2000, "interval_s": 10, "timeout_s": 10, "expected_status": 10,
    "budgeting": 20, "slice_minutes": 10, "slice_threshold": 20, "min_events": 20,
}  # fmt: skip
# Where SloIn's fields are on the form (pydantic's location, without the union's tag).
FIELD_OF = {
    "good_query": "good_query",
    "bad_query": "good_query",
    "total_query": "total_query",
    "metric": "metric",
    "threshold_s": "threshold_s",
    "selector": "selector",
    "url": "probe_url",
    "interval_s": "interval_s",
    "timeout_s": "timeout_s",
    "expected_status": "expected_status",
    "min_events": "min_events",
}
# A model-level message naming one of these goes next to that field.
MESSAGE_FIELDS = (
    ("slice_minutes", "slice_minutes"),
    ("good_query", "good_query"),
    ("total_query", "total_query"),
    ("metric name", "metric"),
    ("give probe", "source"),
    ("sli kind", "sli_kind"),
)


async def posted(request: Request) -> dict[str, str]:
    form = await request.form()
    return {
        name: value if isinstance(value := form.get(name, ""), str) else "" for name in FORM_FIELDS
    }


PostedForm = Annotated[dict[str, str], Depends(posted)]


def _number(
    values: Mapping[str, str], name: str, errors: list[FieldError], *, whole: bool = False
) -> float | int | None:
    text = values.get(name, "").strip().replace(",", ".").rstrip("%").strip()
    if not text:
        return None
    try:
        return int(text) if whole else float(text)
    except ValueError:
        errors.append(
            FieldError(f"body.{name}", "enter a whole number" if whole else "enter a number")
        )
        return None


def parse_form(
    values: Mapping[str, str], base: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """The form as SloIn fields over ``base`` (an existing SLO's input, so that what the form
    does not show (labels, policy, factor overrides) stays), and the numbers it could not read."""
    check_lengths(values, FORM_LIMITS)
    errors: list[FieldError] = []
    data: dict[str, Any] = dict(base or {})
    source = values["source"].strip()
    data.update(
        entity=values["entity"].strip(),
        name=values["name"].strip(),
        description=values["description"].strip(),
        objective=_number(values, "objective", errors),
        window=values["window"].strip() or "30d",
        time_zone=values["time_zone"].strip() or "UTC",
        source=source,
        budgeting=values["budgeting"].strip() or "occurrences",
        slice_minutes=None,
        slice_threshold=None,
        sli=None,
        probe=None,
    )
    if data["objective"] is None and not any(e.field == "body.objective" for e in errors):
        errors.append(FieldError("body.objective", "enter the objective, e.g. 99.9"))
    if data["budgeting"] == "timeslices":
        data["slice_minutes"] = _number(values, "slice_minutes", errors, whole=True)
        data["slice_threshold"] = _number(values, "slice_threshold", errors)
    if source == "prometheus":
        if values["sli_kind"] == "latency":
            data["sli"] = {
                "kind": "latency",
                "metric": values["metric"].strip() or None,
                "threshold_s": _number(values, "threshold_s", errors),
                "selector": values["selector"].strip(),
            }
            if data["sli"]["threshold_s"] is None:
                errors.append(FieldError("body.threshold_s", "enter the threshold in seconds"))
                data["sli"]["threshold_s"] = 1.0
        else:
            which = "bad_query" if values["query_kind"] == "bad" else "good_query"
            data["sli"] = {
                "kind": "ratio",
                which: values["good_query"].strip() or None,
                "total_query": values["total_query"].strip() or None,
            }
    elif source == "probe":
        probe: dict[str, Any] = {"url": values["probe_url"].strip() or None}
        for name, whole in (("interval_s", True), ("timeout_s", False), ("expected_status", True)):
            number = _number(values, name, errors, whole=whole)
            if number is not None:
                probe[name] = number
        if base and isinstance(base.get("probe"), dict):
            threshold = base["probe"].get("latency_threshold_ms")
            if threshold is not None:
                probe["latency_threshold_ms"] = threshold
        data["probe"] = probe
    elif source == "events" and base and (base.get("sli") or {}).get("kind") == "latency":
        data["sli"] = base["sli"]  # a latency SLI on events keeps its threshold
    alerting = dict((base or {}).get("alerting") or {})
    alerting.update(page=values["page"] == "on", ticket=values["ticket"] == "on")
    min_events = _number(values, "min_events", errors, whole=True)
    alerting["min_events"] = min_events or 0
    data["alerting"] = alerting
    return data, errors


def _model_errors(exc: pydantic.ValidationError) -> list[FieldError]:
    """Pydantic's errors of SloIn as errors of the form's fields."""
    found = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "required"
        name = next((FIELD_OF[part] for part in reversed(loc) if part in FIELD_OF), None)
        if name is None and loc and loc[0] in FORM_FIELDS:
            name = loc[0]
        if name is None:
            name = next((field for key, field in MESSAGE_FIELDS if key in message), None)
        found.append(FieldError(f"body.{name}" if name else "body", message))
    return found


def validated(data: dict[str, Any], earlier: list[FieldError]) -> SloIn:
    try:
        model = SloIn.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = [*earlier, *_model_errors(exc)]
        raise ValidationFailed("the SLO is not valid", errors=_first_per_field(errors)) from exc
    if earlier:
        raise ValidationFailed("the SLO is not valid", errors=_first_per_field(earlier))
    return model


def _first_per_field(errors: list[FieldError]) -> list[FieldError]:
    first: dict[str, FieldError] = {}
    for error in errors:
        first.setdefault(error.field, error)
    return list(first.values())


def blank_values(entity: str = "") -> dict[str, str]:
    values = dict.fromkeys(FORM_FIELDS, "")
    values.update(
        entity=entity,
        objective="99.9",
        window="30d",
        time_zone="UTC",
        source="events",
        sli_kind="ratio",
        query_kind="good",
        interval_s="60",
        timeout_s="10",
        expected_status="200",
        budgeting="occurrences",
        page="on",
        ticket="on",
        min_events="0",
    )
    return values


def values_of(slo: Slo, entity: Entity) -> dict[str, str]:
    """An SLO as form values, for the edit form."""
    data = service.input_of(slo, entity.ref)
    sli = data.get("sli") or {}
    probe = data.get("probe") or {}
    alerting = data.get("alerting") or {}

    def text(value: Any) -> str:
        return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    values = blank_values(entity.ref)
    values.update(
        name=slo.name,
        description=slo.description,
        objective=text(data["objective"]),
        window=data["window"],
        time_zone=data["time_zone"],
        source=data["source"],
        sli_kind="latency" if sli.get("kind") == "latency" else "ratio",
        query_kind="bad" if sli.get("bad_query") else "good",
        good_query=sli.get("bad_query") or sli.get("good_query") or "",
        total_query=sli.get("total_query") or "",
        metric=sli.get("metric") or "",
        threshold_s=text(sli.get("threshold_s")),
        selector=sli.get("selector") or "",
        probe_url=probe.get("url") or "",
        interval_s=text(probe.get("interval_s", 60)),
        timeout_s=text(probe.get("timeout_s", 10)),
        expected_status=text(probe.get("expected_status", 200)),
        budgeting=data["budgeting"],
        slice_minutes=text(data.get("slice_minutes")),
        slice_threshold=text(data.get("slice_threshold")),
        page="on" if alerting.get("page", True) else "",
        ticket="on" if alerting.get("ticket", True) else "",
        min_events=text(alerting.get("min_events", 0)),
    )
    return values
