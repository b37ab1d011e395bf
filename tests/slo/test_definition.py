"""SLO definitions: their rules, and the ones built from the vendored Sloth specs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from lamplighter.slo import engine, sloth
from lamplighter.slo.definition import (
    OCCURRENCES,
    AlertingSettings,
    RatioSli,
    RawErrorRatioSli,
    SloDefinition,
    ThresholdSli,
    Timeslices,
    from_sloth,
    percent_to_ratio,
)

SLOTH = Path(__file__).parent.parent / "fixtures" / "sloth"


def _definitions(name: str) -> list[SloDefinition]:
    result = sloth.parse((SLOTH / name).read_text(encoding="utf-8"), source=name)
    assert result.problems == ()
    return [definition for spec in result.specs for definition in from_sloth(spec)]


def test_from_sloth_gives_one_definition_per_sloth_slo() -> None:
    for path in sorted(SLOTH.glob("*.yml")):
        result = sloth.parse(path.read_text(encoding="utf-8"), source=path.name)
        definitions = [d for spec in result.specs for d in from_sloth(spec)]
        assert [(d.service, d.name) for d in definitions] == [
            (spec.service, slo.name) for spec in result.specs for slo in spec.slos
        ]
        for definition in definitions:
            assert definition.window == engine.Window.rolling(30)
            assert definition.budgeting == OCCURRENCES


def test_from_sloth_getting_started_maps_every_field() -> None:
    [definition] = _definitions("getting-started.yml")
    assert definition.name == "requests-availability"
    assert definition.service == "myservice"
    assert definition.objective_ratio == 0.999
    assert definition.description == "Common SLO based on availability for HTTP request responses."
    assert definition.labels == {"owner": "myteam", "repo": "myorg/myservice", "tier": "2"}
    assert definition.sli == RatioSli(
        bad_query='sum(rate(http_request_duration_seconds_count{job="myservice",code=~"(5..|429)"}[{{.window}}]))',
        total_query='sum(rate(http_request_duration_seconds_count{job="myservice"}[{{.window}}]))',
    )
    assert definition.alerting == AlertingSettings(
        page_enabled=True,
        ticket_enabled=True,
        labels={"category": "availability"},
        name="MyServiceHighErrorRate",
    )


def test_from_sloth_raw_sli_and_disabled_alerts() -> None:
    raw = _definitions("raw-home-wifi.yml")
    assert all(isinstance(d.sli, RawErrorRatioSli) for d in raw)
    assert "{{.window}}" in raw[0].sli.error_ratio_query  # type: ignore[union-attr]
    [quiet] = _definitions("no-alerts.yml")
    assert quiet.alerting.page_enabled is False
    assert quiet.alerting.ticket_enabled is False


def test_objectives_are_exact_ratios() -> None:
    assert percent_to_ratio(99.9) == 0.999
    assert percent_to_ratio(95) == 0.95
    assert percent_to_ratio(99.99) == 0.9999


@pytest.mark.parametrize("objective", [0.0, 1.0, 1.5, -0.1])
def test_objective_outside_zero_one_is_refused(objective: float) -> None:
    with pytest.raises(ValueError, match="objective"):
        SloDefinition("a", "svc", objective, engine.Window.rolling(28), RatioSli("t", "g"))


def test_ratio_sli_needs_exactly_one_of_good_and_bad() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RatioSli("total")
    with pytest.raises(ValueError, match="exactly one"):
        RatioSli("total", good_query="good", bad_query="bad")


def test_threshold_sli_and_timeslices_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="op"):
        ThresholdSli("latency", "eq", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        Timeslices(dt.timedelta(minutes=1), 1.5)
    with pytest.raises(ValueError, match="longer than zero"):
        Timeslices(dt.timedelta(0), 0.9)
