"""Sloth ``prometheus/v1`` specs: parsing, and the Prometheus rules Sloth generates for them.

Pure code, no I/O. ``parse`` turns a (possibly multi-document) YAML file into specs, or into
problems naming the file, the document (from 1) and the field; ``rules`` gives the recording
and alerting rule groups exactly as ``sloth generate`` writes them, so dashboards and alert
routes built on Sloth's series (``slo:sli_error:ratio_rate5m``, ``sloth_id``…) keep working:

    result = parse(text, source="getting-started.yml")
    groups = rules(result.specs[0], extra_labels={"cmd": "examplesgen.sh"})
    # sloth-slo-sli-recordings-myservice-requests-availability, ...-meta-..., ...-alerts-...
    text = dump(groups)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
import yaml

from lamplighter.catalog.backstage_yaml import load_all
from lamplighter.slo import engine

SPEC_VERSION = "prometheus/v1"
MAX_FILE_BYTES = 1024 * 1024
# What Sloth's CLI writes into sloth_slo_info; "dev" is what the vendored _gen files carry.
SLOTH_MODE = "cli-gen-prom"
SLOTH_VERSION = "dev"
SLI_WINDOWS = (
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=1),
    dt.timedelta(hours=2),
    dt.timedelta(hours=6),
    dt.timedelta(days=1),
    dt.timedelta(days=3),
)
WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.window\s*\}\}")
# Names end up inside PromQL selectors and group names: no quotes, spaces or braces.
NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Problem:
    """One mistake in a spec file; ``str()`` is the user-facing line."""

    source: str
    document: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}#{self.document}: {where}{self.message}"


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)


class EventsSli(_Model):
    error_query: str
    total_query: str

    @pydantic.field_validator("error_query", "total_query")
    @classmethod
    def _has_window(cls, query: str) -> str:
        return _require_window(query)


class RawSli(_Model):
    error_ratio_query: str

    @pydantic.field_validator("error_ratio_query")
    @classmethod
    def _has_window(cls, query: str) -> str:
        return _require_window(query)


class Sli(_Model):
    events: EventsSli | None = None
    raw: RawSli | None = None
    plugin: dict[str, Any] | None = None

    @pydantic.field_validator("plugin")
    @classmethod
    def _refuse_plugin(cls, plugin: dict[str, Any] | None) -> None:
        if plugin is None:
            return None
        # Plugins are Go code inside Sloth; there is nothing here to run them with.
        raise ValueError(f"SLI plugins are not supported (plugin {plugin.get('id')!r})")

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> Sli:
        if (self.events is None) == (self.raw is None):
            raise ValueError("needs exactly one of events, raw")
        return self


class Alert(_Model):
    disable: bool = False
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class Alerting(_Model):
    name: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    page_alert: Alert = Alert()
    ticket_alert: Alert = Alert()


class SlothSlo(_Model):
    name: str = pydantic.Field(pattern=NAME_PATTERN)
    objective: float
    description: str = ""
    labels: dict[str, str] = {}
    sli: Sli
    alerting: Alerting = Alerting()

    @pydantic.field_validator("objective")
    @classmethod
    def _objective_percent(cls, objective: float) -> float:
        if not 0 < objective < 100:
            raise ValueError("must be between 0 and 100 (exclusive)")
        return objective


class SlothSpec(_Model):
    """One ``prometheus/v1`` document: a service and its SLOs."""

    version: Literal["prometheus/v1"]
    service: str = pydantic.Field(pattern=NAME_PATTERN)
    labels: dict[str, str] = {}
    slos: list[SlothSlo] = pydantic.Field(min_length=1)


@dataclass(frozen=True)
class ParseResult:
    """The specs of the documents that are right, and the problems of those that are not."""

    specs: tuple[SlothSpec, ...]
    problems: tuple[Problem, ...]


def _require_window(query: str) -> str:
    if not WINDOW_PLACEHOLDER.search(query):
        raise ValueError("must contain the {{.window}} placeholder")
    return query


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "literal_error": f'must be "{SPEC_VERSION}"',
    "too_short": "must not be empty",
    "string_pattern_mismatch": "must be letters, digits, '-', '_' or '.'",
}


def _pydantic_problems(
    error: pydantic.ValidationError, *, source: str, document: int
) -> list[Problem]:
    problems = []
    for detail in error.errors():
        path = ".".join(str(part) for part in detail["loc"])
        message = _MESSAGES.get(detail["type"]) or detail["msg"].removeprefix("Value error, ")
        problems.append(Problem(source, document, path, message))
    return problems


def _semantic_problems(spec: SlothSpec, *, source: str, document: int) -> list[Problem]:
    """What the schema cannot say: label names, duplicate SLOs, alert names."""
    problems = []

    def check_labels(path: str, labels: Mapping[str, str]) -> None:
        for name in labels:
            if not LABEL_NAME.match(name) or name.startswith("__"):
                problems.append(Problem(source, document, path, f"invalid label name {name!r}"))

    check_labels("labels", spec.labels)
    seen: set[str] = set()
    for index, slo in enumerate(spec.slos):
        at = f"slos.{index}"
        if slo.name in seen:
            problems.append(Problem(source, document, f"{at}.name", f"duplicate SLO {slo.name!r}"))
        seen.add(slo.name)
        check_labels(f"{at}.labels", slo.labels)
        alerting = slo.alerting
        check_labels(f"{at}.alerting.labels", alerting.labels)
        check_labels(f"{at}.alerting.page_alert.labels", alerting.page_alert.labels)
        check_labels(f"{at}.alerting.ticket_alert.labels", alerting.ticket_alert.labels)
        enabled = not (alerting.page_alert.disable and alerting.ticket_alert.disable)
        if enabled and not alerting.name.strip():
            problems.append(
                Problem(
                    source,
                    document,
                    f"{at}.alerting.name",
                    "required unless page_alert and ticket_alert are both disabled",
                )
            )
    return problems


def parse(text: str, *, source: str) -> ParseResult:
    """Parse every document of a Sloth spec file; a bad document does not stop the others."""
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        problem = Problem(source, 1, "", f"file is larger than {MAX_FILE_BYTES:,} bytes")
        return ParseResult((), (problem,))
    documents, refused = load_all(text)
    specs: list[SlothSpec] = []
    problems: list[Problem] = []
    for index, document in enumerate(documents, start=1):
        if document is None:  # an empty document, as after a trailing ---
            continue
        if not isinstance(document, dict):
            problems.append(Problem(source, index, "", "a spec document must be a mapping"))
            continue
        try:
            spec = SlothSpec.model_validate(document)
        except pydantic.ValidationError as error:
            problems.extend(_pydantic_problems(error, source=source, document=index))
            continue
        semantic = _semantic_problems(spec, source=source, document=index)
        if semantic:
            problems.extend(semantic)
        else:
            specs.append(spec)
    if refused is not None:
        problems.append(Problem(source, refused.document + 1, "", refused.reason))
    return ParseResult(tuple(specs), tuple(problems))


def number(value: float) -> str:
    """Format a float as Go's ``%v`` does: shortest round-trip, no ``.0`` on integers."""
    text = repr(float(value))
    return text.removesuffix(".0")


def duration(window: dt.timedelta) -> str:
    """Format a window as Sloth does: ``5m``, ``1h``, ``1d12h``, ``30d`` (never weeks)."""
    seconds = int(window.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def render_window(query: str, window: str) -> str:
    return WINDOW_PLACEHOLDER.sub(window, query)


def _slo_rules(
    spec: SlothSpec, slo: SlothSlo, extra_labels: Mapping[str, str], window_days: int
) -> list[dict[str, Any]]:
    slo_id = f"{spec.service}-{slo.name}"
    identity = {"sloth_id": slo_id, "sloth_service": spec.service, "sloth_slo": slo.name}
    selector = f'{{sloth_id="{slo_id}", sloth_service="{spec.service}", sloth_slo="{slo.name}"}}'
    # Later wins: the SLO's labels over the service's, extra labels over both, identity last.
    labels = {**spec.labels, **slo.labels, **extra_labels, **identity}
    period = duration(dt.timedelta(days=window_days))

    sli_rules: list[dict[str, Any]] = []
    for window in SLI_WINDOWS:
        name = duration(window)
        if slo.sli.events is not None:
            expr = (
                f"({render_window(slo.sli.events.error_query, name)})\n"
                f"/\n"
                f"({render_window(slo.sli.events.total_query, name)})\n"
            )
        else:
            assert slo.sli.raw is not None
            expr = f"({render_window(slo.sli.raw.error_ratio_query, name)})"
        sli_rules.append(
            {
                "record": f"slo:sli_error:ratio_rate{name}",
                "expr": expr,
                "labels": {**labels, "sloth_window": name},
            }
        )
    # The period's ratio averages the 5m one rather than querying 30 days of raw series.
    sli_rules.append(
        {
            "record": f"slo:sli_error:ratio_rate{period}",
            "expr": (
                f"sum_over_time(slo:sli_error:ratio_rate5m{selector}[{period}])\n"
                f"/ ignoring (sloth_window)\n"
                f"count_over_time(slo:sli_error:ratio_rate5m{selector}[{period}])\n"
            ),
            "labels": {**labels, "sloth_window": period},
        }
    )

    objective_ratio = number(slo.objective / 100)
    by_budget = "/ on(sloth_id, sloth_slo, sloth_service) group_left"
    meta = [
        ("slo:objective:ratio", f"vector({objective_ratio})"),
        ("slo:error_budget:ratio", f"vector(1-{objective_ratio})"),
        ("slo:time_period:days", f"vector({window_days})"),
        (
            "slo:current_burn_rate:ratio",
            f"slo:sli_error:ratio_rate5m{selector}\n{by_budget}\n"
            f"slo:error_budget:ratio{selector}\n",
        ),
        (
            "slo:period_burn_rate:ratio",
            f"slo:sli_error:ratio_rate{period}{selector}\n{by_budget}\n"
            f"slo:error_budget:ratio{selector}\n",
        ),
        (
            "slo:period_error_budget_remaining:ratio",
            f"1 - slo:period_burn_rate:ratio{selector}",
        ),
    ]
    meta_rules: list[dict[str, Any]] = [
        {"record": record, "expr": expr, "labels": dict(labels)} for record, expr in meta
    ]
    info = {
        **labels,
        "sloth_mode": SLOTH_MODE,
        "sloth_objective": number(slo.objective),
        "sloth_spec": SPEC_VERSION,
        "sloth_version": SLOTH_VERSION,
    }
    meta_rules.append({"record": "sloth_slo_info", "expr": "vector(1)", "labels": info})

    groups = [
        {"name": f"sloth-slo-sli-recordings-{slo_id}", "rules": sli_rules},
        {"name": f"sloth-slo-meta-recordings-{slo_id}", "rules": meta_rules},
    ]
    alert_rules = _alert_rules(slo, selector, window_days)
    if alert_rules:
        groups.append({"name": f"sloth-slo-alerts-{slo_id}", "rules": alert_rules})
    return groups


def _alert_rules(slo: SlothSlo, selector: str, window_days: int) -> list[dict[str, Any]]:
    # Sloth divides by 100 once, so 99.9 gives 0.0009999999999999432, not 1 - 0.999.
    error_budget = number((100 - slo.objective) / 100)
    alerting = slo.alerting
    rules = []
    for severity, alert in (
        (engine.Severity.PAGE, alerting.page_alert),
        (engine.Severity.TICKET, alerting.ticket_alert),
    ):
        if alert.disable:
            continue
        conditions = []
        for rule in engine.alert_rules(window_days):
            if rule.severity is not severity:
                continue
            threshold = f"({number(rule.burn_rate_factor)} * {error_budget})"
            short, long = duration(rule.short_window), duration(rule.long_window)
            conditions.append(
                "(\n"
                f"    max(slo:sli_error:ratio_rate{short}{selector} > {threshold})"
                " without (sloth_window)\n"
                "    and\n"
                f"    max(slo:sli_error:ratio_rate{long}{selector} > {threshold})"
                " without (sloth_window)\n"
                ")"
            )
        annotations = {
            "title": (
                f"({severity.value}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}}"
                " SLO error budget burn rate is too fast."
            ),
            "summary": (
                "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate"
                " is over expected."
            ),
            **alerting.annotations,
            **alert.annotations,
        }
        rules.append(
            {
                "alert": alerting.name,
                "expr": "\nor\n".join(conditions) + "\n",
                "labels": {**alerting.labels, **alert.labels, "sloth_severity": severity.value},
                "annotations": annotations,
            }
        )
    return rules


def rules(
    spec: SlothSpec, *, extra_labels: Mapping[str, str] | None = None, window_days: int = 30
) -> list[dict[str, Any]]:
    """Return the Prometheus rule groups Sloth generates for ``spec`` (three per SLO)."""
    groups: list[dict[str, Any]] = []
    for slo in spec.slos:
        groups.extend(_slo_rules(spec, slo, extra_labels or {}, window_days))
    return groups


class _RulesDumper(yaml.SafeDumper):
    pass


# Characters YAML 1.1 takes for line breaks besides "\n"; PyYAML folds them in other styles.
YAML_BREAKS = ("\r", "\x85", "\u2028", "\u2029")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style: str | None = "|" if "\n" in value else None
    if any(mark in value for mark in YAML_BREAKS):
        style = '"'  # YAML reads these as line breaks unless escaped in double quotes
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _represent_str)


def dump(groups: Sequence[Mapping[str, Any]]) -> str:
    """Write rule groups as a Prometheus rules file."""
    return yaml.dump(
        {"groups": [dict(group) for group in groups]},
        Dumper=_RulesDumper,
        sort_keys=False,
        allow_unicode=True,
        width=1_000_000,
    )
