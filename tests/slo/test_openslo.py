"""OpenSLO v1: the vendored examples import or are refused by name; export reads back equal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamplighter.slo import engine, openslo
from lamplighter.slo.definition import (
    OCCURRENCES,
    AlertingSettings,
    RatioSli,
    RawErrorRatioSli,
    SloDefinition,
    ThresholdSli,
    Timeslices,
)
from lamplighter.slo.sloth import Problem

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openslo"
FILES = sorted(FIXTURES.rglob("*.yaml"))


def _parse(relative: str) -> openslo.OpenSloResult:
    path = FIXTURES / relative
    return openslo.parse(path.read_text(encoding="utf-8"), source=path.name)


def _where(result: openslo.OpenSloResult) -> set[tuple[str, int, str]]:
    return {(p.source, p.document, p.path) for p in result.problems}


def test_every_vendored_file_is_read() -> None:
    assert len(FILES) == 11
    imported: dict[str, list[str]] = {}
    refused: set[tuple[str, int, str]] = set()
    for path in FILES:
        result = openslo.parse(path.read_text(encoding="utf-8"), source=path.name)
        imported[str(path.relative_to(FIXTURES))] = [d.name for d in result.definitions]
        refused |= _where(result)
    assert {name: names for name, names in imported.items() if names} == {
        "OpenSLO-examples/treat-low-traffic-as-equally-important/timeslices-slo.yaml": [
            "service-availability"
        ],
        "go-sdk-v1-examples/slos.yaml": ["web-availability"],
    }
    assert refused == {
        ("occurences-slo.yaml", 1, "spec.timeWindow.0.duration"),
        ("ratio-timeslices.yaml", 1, "spec.timeWindow.0.duration"),
        ("timeslices-slo.yaml", 1, "spec.objectives"),
        ("timeslices-slo.yaml", 1, "spec.timeWindow.0.duration"),
        ("slis.yaml", 2, "spec.ratioMetric.total.metricSource.spec.query"),
        ("slis.yaml", 3, "spec.ratioMetric.rawType"),
    }


def test_two_week_rolling_windows_are_refused_by_name() -> None:
    for name in ("occurences-slo.yaml", "ratio-timeslices.yaml"):
        result = _parse(f"OpenSLO-examples/budgeting-method/{name}")
        assert result.definitions == ()
        [problem] = result.problems
        assert "rolling window 2w is not supported" in problem.message


def test_calendar_minute_and_second_objective_are_named() -> None:
    result = _parse("OpenSLO-examples/budgeting-method/timeslices-slo.yaml")
    assert result.definitions == ()
    messages = {p.path: p.message for p in result.problems}
    assert "calendar window 1m is not supported" in messages["spec.timeWindow.0.duration"]
    assert "imports only the first" in messages["spec.objectives"]


def test_unreadable_slis_are_named() -> None:
    result = _parse("go-sdk-v1-examples/slis.yaml")
    messages = {p.document: p.message for p in result.problems}
    assert "AppDynamics has no query" in messages[2]
    assert "applicationName, metricPath" in messages[2]
    assert "'success' is not supported" in messages[3]


def test_go_sdk_slo_is_imported_field_by_field() -> None:
    [slo] = _parse("go-sdk-v1-examples/slos.yaml").definitions
    assert slo == SloDefinition(
        name="web-availability",
        service="web",
        description="X% of search requests are successful",
        objective_ratio=0.995,
        window=engine.Window.calendar_week("America/New_York"),
        budgeting=Timeslices(dt.timedelta(minutes=1), 0.95),
        sli=RatioSli(
            good_query='sum(http_requests{k8s_cluster="prod",component="web",code=~"2xx|4xx"})',
            total_query='sum(http_requests{k8s_cluster="prod",component="web"})',
        ),
        labels={"env": "prod", "team": "team-a,team-b"},
    )


def test_low_traffic_slo_is_imported_field_by_field() -> None:
    [slo] = _parse(
        "OpenSLO-examples/treat-low-traffic-as-equally-important/timeslices-slo.yaml"
    ).definitions
    assert slo.name == "service-availability"
    assert slo.service == "web-availability"
    assert slo.objective_ratio == 0.9995
    assert slo.window == engine.Window.calendar_week("America/New_York")
    assert slo.budgeting == Timeslices(dt.timedelta(minutes=1), 0.95)
    assert slo.sli == RatioSli(good_query="Any", total_query="Any")


def test_other_kinds_are_accepted_without_problems() -> None:
    for name in (
        "alert_conditions.yaml",
        "alert_notification_targets.yaml",
        "alert_policies.yaml",
        "data_sources.yaml",
        "services.yaml",
    ):
        result = _parse(f"go-sdk-v1-examples/{name}")
        assert result == openslo.OpenSloResult((), ()), name


SLI_AND_SLO = """\
apiVersion: openslo/v1
kind: SLI
metadata:
  name: latency
spec:
  thresholdMetric:
    metricSource:
      type: Prometheus
      spec:
        query: histogram_quantile(0.99, rate(http_seconds_bucket[5m]))
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: fast-search
spec:
  service: search
  indicatorRef: latency
  timeWindow:
    - duration: 4w
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - op: lte
      value: 0.3
      targetPercent: 99.5
"""


def test_indicator_ref_resolves_a_threshold_sli() -> None:
    result = openslo.parse(SLI_AND_SLO, source="search.yaml")
    assert result.problems == ()
    [slo] = result.definitions
    assert slo.window == engine.Window.rolling(28)
    assert slo.objective_ratio == 0.995
    assert slo.budgeting == OCCURRENCES
    assert slo.sli == ThresholdSli(
        "histogram_quantile(0.99, rate(http_seconds_bucket[5m]))", "lte", 0.3
    )


def _problems(text: str) -> list[Problem]:
    return list(openslo.parse(textwrap.dedent(text), source="bad.yaml").problems)


def test_mistakes_name_file_document_and_field() -> None:
    wrong_version = SLI_AND_SLO.replace("openslo/v1\nkind: SLO", "openslo/v1alpha\nkind: SLO")
    assert [(p.source, p.document, p.path) for p in _problems(wrong_version)] == [
        ("bad.yaml", 2, "apiVersion")
    ]
    over = SLI_AND_SLO.replace("targetPercent: 99.5", "targetPercent: 100.5")
    [problem] = _problems(over)
    assert (problem.document, problem.path) == (2, "spec.objectives.0.targetPercent")
    assert "between 0 and 100" in problem.message
    unknown = SLI_AND_SLO.replace("indicatorRef: latency", "indicatorRef: latencies")
    [problem] = _problems(unknown)
    assert (problem.document, problem.path) == (2, "spec.indicatorRef")
    assert "no SLI named 'latencies'" in problem.message
    odd_window = SLI_AND_SLO.replace("4w", "13d")
    [problem] = _problems(odd_window)
    assert (problem.document, problem.path) == (2, "spec.timeWindow.0.duration")
    assert str(problem).startswith("bad.yaml#2: spec.timeWindow.0.duration: rolling window 13d")


def test_missing_total_is_named_and_other_documents_still_import() -> None:
    text = openslo.export([_make_definition("good-one")])
    missing_total = """\
        apiVersion: openslo/v1
        kind: SLO
        metadata: {name: broken}
        spec:
          service: web
          indicator:
            metadata: {name: broken-sli}
            spec:
              ratioMetric:
                good: {metricSource: {type: Prometheus, spec: {query: sum(ok)}}}
          timeWindow: [{duration: 30d, isRolling: true}]
          budgetingMethod: Occurrences
          objectives: [{target: 0.99}]
        """
    result = openslo.parse(textwrap.dedent(missing_total) + text, source="mixed.yaml")
    assert [d.name for d in result.definitions] == ["good-one"]
    assert [(p.document, p.path) for p in result.problems] == [
        (1, "spec.indicator.spec.ratioMetric.total")
    ]


def test_an_slo_using_a_refused_sli_points_to_it() -> None:
    text = SLI_AND_SLO.replace("query: histogram", "promql: histogram")
    assert [(p.document, p.path) for p in _problems(text)] == [
        (1, "spec.thresholdMetric.metricSource.spec.query"),
        (2, "spec.indicatorRef"),
    ]


def _make_definition(name: str = "checkout", **changes: object) -> SloDefinition:
    fields: dict[str, object] = {
        "name": name,
        "service": "shop",
        "objective_ratio": 0.999,
        "window": engine.Window.rolling(30),
        "sli": RatioSli(total_query="sum(rate(t[{{.window}}]))", bad_query="sum(rate(e[5m]))"),
    }
    fields.update(changes)
    return SloDefinition(**fields)  # type: ignore[arg-type]


queries = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85", whitelist_characters="\n"
    ),
    min_size=1,
    max_size=30,
).filter(lambda text: text.strip() != "")
names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
slis = st.one_of(
    st.builds(lambda g, t: RatioSli(total_query=t, good_query=g), queries, queries),
    st.builds(lambda b, t: RatioSli(total_query=t, bad_query=b), queries, queries),
    st.builds(RawErrorRatioSli, queries),
    st.builds(
        ThresholdSli,
        queries,
        st.sampled_from(["lt", "lte", "gt", "gte"]),
        st.floats(-1e6, 1e6, allow_nan=False),
    ),
)
windows = st.one_of(
    st.sampled_from([7, 28, 30]).map(engine.Window.rolling),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]).map(engine.Window.calendar_week),
    st.sampled_from(["UTC", "Asia/Tokyo"]).map(engine.Window.calendar_month),
)
budgetings = st.one_of(
    st.just(OCCURRENCES),
    st.builds(
        Timeslices,
        st.sampled_from([dt.timedelta(seconds=30), dt.timedelta(minutes=1), dt.timedelta(hours=1)]),
        st.floats(0.01, 1.0),
    ),
)
label_maps = st.dictionaries(names, st.text(max_size=10), max_size=3)
definitions = st.builds(
    SloDefinition,
    name=names,
    service=names,
    objective_ratio=st.floats(0.0001, 0.9999),
    window=windows,
    sli=slis,
    budgeting=budgetings,
    description=st.text(max_size=20),
    alerting=st.builds(AlertingSettings, st.booleans(), st.booleans(), label_maps),
    labels=label_maps,
)


@given(st.lists(definitions, max_size=3))
def test_export_then_parse_gives_equal_definitions(defs: list[SloDefinition]) -> None:
    _round_trips(defs)


@pytest.mark.parametrize("text", ["\x85", "a\u2028b", "line\r\nbreak", "x\n\x85"])
def test_text_with_unusual_line_breaks_round_trips(text: str) -> None:
    """YAML 1.1 reads NEL and the Unicode line separators as line breaks (hypothesis found it)."""
    _round_trips([dataclasses.replace(_make_definition(), description=text)])


def _round_trips(defs: list[SloDefinition]) -> None:
    result = openslo.parse(openslo.export(defs), source="export.yaml")
    assert result.problems == ()
    assert list(result.definitions) == defs


def test_export_is_openslo_v1_with_an_inline_indicator() -> None:
    text = openslo.export([_make_definition()])
    assert text.startswith("---\napiVersion: openslo/v1\nkind: SLO\n")
    assert "indicator:" in text
    assert "indicatorRef" not in text
    assert "duration: 30d" in text
