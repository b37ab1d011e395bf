"""Prometheus rules for stored SLOs: Sloth's names, labels and expressions, at most 17 rules per
SLO, accepted by promtool, one query however many SLOs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lamplighter.core.db import Database
from lamplighter.slo import rules, service, sloth
from lamplighter.slo.schemas import SloIn
from tests.conftest import SYSTEM, require
from tests.slo.conftest import Org

SLOTH_FIXTURES = Path(__file__).parent.parent / "fixtures" / "sloth"
EXTRA_LABELS = {"cmd": "examplesgen.sh"}  # what Sloth's examplesgen.sh passed

RATIO = {
    "kind": "ratio",
    "bad_query": 'sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))',
    "total_query": "sum(rate(http_requests_total[{{.window}}]))",
}


def _normalised(value: Any) -> Any:
    """Drop whitespace from every string: stored queries lose their trailing newline, so
    Sloth's ``)\n)`` is our ``))`` (the same PromQL)."""
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, str):
        return re.sub(r"\s+", "", value)
    return value


def store_sloth_fixture(db: Database, name: str) -> tuple[sloth.SlothSpec, dict[str, Any]]:
    """Store the Sloth example's SLOs on a service of its name, as `slo apply` would; return
    the spec and the rules Sloth generated for it."""
    path = SLOTH_FIXTURES / name
    (spec,) = sloth.parse(path.read_text(), source=name).specs
    org = Org(db, name=spec.service)
    for slo in spec.slos:
        sli: dict[str, Any]
        if slo.sli.events is not None:
            sli = {
                "kind": "ratio",
                "bad_query": slo.sli.events.error_query,
                "total_query": slo.sli.events.total_query,
            }
        else:
            assert slo.sli.raw is not None
            sli = {"kind": "raw", "error_ratio_query": slo.sli.raw.error_ratio_query}
        org.slo(
            name=slo.name,
            description=slo.description,
            objective=slo.objective,
            source="prometheus",
            sli=sli,
            labels={**spec.labels, **slo.labels, **EXTRA_LABELS},
            alerting={
                "page": not slo.alerting.page_alert.disable,
                "ticket": not slo.alerting.ticket_alert.disable,
                "labels": slo.alerting.labels,
            },
        )
    generated = yaml.safe_load((SLOTH_FIXTURES / "_gen" / name).read_text())
    return spec, generated


def render(db: Database, slo_ids: list[int] | None = None) -> dict[str, Any]:
    with db.sessionmaker() as session:
        text = rules.render(session, slo_ids)
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool")
    assert promtool is not None
    return subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("fixture", ["no-alerts.yml", "raw-home-wifi.yml"])
def test_stored_sloth_examples_give_the_recordings_sloth_generated(
    db: Database, fixture: str
) -> None:
    _, generated = store_sloth_fixture(db, fixture)

    ours = _normalised(render(db))["groups"]
    expected = _normalised(generated)["groups"]

    assert [group["name"] for group in ours] == [group["name"] for group in expected]
    # Recordings (SLI and meta) are Sloth's to the label and the expression.
    for group, expected_group in zip(ours[:2], expected[:2], strict=True):
        assert group["rules"] == expected_group["rules"]


def test_stored_sloth_example_alerts_have_sloths_expressions_and_labels(db: Database) -> None:
    _, generated = store_sloth_fixture(db, "getting-started.yml")

    ours = _normalised(render(db))["groups"]
    expected = _normalised(generated)["groups"]

    assert [group["name"] for group in ours] == [
        "sloth-slo-sli-recordings-myservice-requests-availability",
        "sloth-slo-meta-recordings-myservice-requests-availability",
        "sloth-slo-alerts-myservice-requests-availability",
    ]
    assert [group["name"] for group in ours] == [group["name"] for group in expected]
    assert ours[0]["rules"] == expected[0]["rules"]
    assert ours[1]["rules"] == expected[1]["rules"]
    page, ticket = ours[2]["rules"]
    sloth_page, sloth_ticket = expected[2]["rules"]
    assert page["expr"] == sloth_page["expr"]
    assert ticket["expr"] == sloth_ticket["expr"]
    # The alert's name and its per-severity labels and annotations are not stored on an SLO;
    # the alerting labels and Sloth's severity label are.
    assert page["alert"] == ticket["alert"] == "MyserviceRequestsAvailabilitySloBurnRate"
    assert page["labels"] == {"category": "availability", "sloth_severity": "page"}
    assert ticket["labels"] == {"category": "availability", "sloth_severity": "ticket"}
    assert page["annotations"]["title"] == sloth_page["annotations"]["title"]


def make_every_kind(org: Org) -> list[int]:
    ids = []
    for name, sli, window in [
        ("ratio-bad", RATIO, "30d"),
        (
            "ratio-good",
            {
                "kind": "ratio",
                "good_query": 'sum(rate(http_requests_total{code!~"5.."}[{{.window}}]))',
                "total_query": "sum(rate(http_requests_total[{{.window}}]))",
            },
            "28d",
        ),
        (
            "latency",
            {
                "kind": "latency",
                "metric": "http_request_duration_seconds",
                "threshold_s": 0.25,
                "selector": 'job="checkout"',
            },
            "calendar-month",
        ),
        (
            "raw",
            {"kind": "raw", "error_ratio_query": "1 - avg(avg_over_time(up[{{.window}}]))"},
            "calendar-week",
        ),
        (
            "threshold",
            {"kind": "threshold", "query": "max(queue_depth)", "op": "lte", "value": 100},
            "7d",
        ),
    ]:
        slo, _ = org.slo(name=name, source="prometheus", sli=sli, window=window)
        ids.append(slo.id)
    return ids


def rules_of(groups: list[dict[str, Any]], slo_id: str) -> list[dict[str, Any]]:
    return [rule for g in groups if g["name"].endswith(f"-{slo_id}") for rule in g["rules"]]


def test_every_sli_kind_gives_at_most_17_rules_that_promtool_accepts(
    db: Database, org: Org, tmp_path: Path
) -> None:
    make_every_kind(org)
    with db.sessionmaker() as session:
        text = rules.render(session)
    (tmp_path / "rules.yml").write_text(text)

    groups = yaml.safe_load(text)["groups"]
    for name in ("ratio-bad", "ratio-good", "latency", "raw", "threshold"):
        found = rules_of(groups, f"checkout-{name}")
        assert len(found) == rules.MAX_RULES_PER_SLO, name
    checked = promtool_check(tmp_path / "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 85 rules found" in checked.stdout


def test_the_sli_kinds_become_sloths_error_queries(db: Database, org: Org) -> None:
    make_every_kind(org)

    groups = render(db)["groups"]

    def five_minutes(slo: str) -> str:
        (rule,) = [
            r
            for r in rules_of(groups, f"checkout-{slo}")
            if r.get("record") == "slo:sli_error:ratio_rate5m"
        ]
        return str(rule["expr"])

    assert five_minutes("ratio-good") == (
        "((sum(rate(http_requests_total[5m]))) - "
        '(sum(rate(http_requests_total{code!~"5.."}[5m]))))\n/\n'
        "(sum(rate(http_requests_total[5m])))\n"
    )
    assert five_minutes("latency") == (
        '((sum(rate(http_request_duration_seconds_count{job="checkout"}[5m]))) - '
        '(sum(rate(http_request_duration_seconds_bucket{job="checkout",le="0.25"}[5m]))))\n/\n'
        '(sum(rate(http_request_duration_seconds_count{job="checkout"}[5m])))\n'
    )
    assert five_minutes("threshold") == (
        "(1 - avg_over_time(((max(queue_depth)) <= bool 100)[5m:1m]))"
    )


@pytest.mark.parametrize(
    ("slo", "days", "page_factor"),
    [("ratio-good", 28, "13.44"), ("latency", 30, "14.4"), ("raw", 7, "3.36")],
)
def test_the_window_sets_the_period_and_the_factors(
    db: Database, org: Org, slo: str, days: int, page_factor: str
) -> None:
    make_every_kind(org)

    groups = render(db)["groups"]

    found = rules_of(groups, f"checkout-{slo}")
    meta = {rule.get("record"): rule["expr"] for rule in found}
    assert meta["slo:time_period:days"] == f"vector({days})"
    assert f"slo:sli_error:ratio_rate{days}d" in meta
    page = next(rule for rule in found if rule.get("labels", {}).get("sloth_severity") == "page")
    assert f"({page_factor} * " in page["expr"]


def test_slos_measured_inside_lamplighter_have_no_rules(db: Database, org: Org) -> None:
    org.slo(name="pushed", source="events")
    org.slo(name="probed", source="probe", probe={"url": "http://127.0.0.1:9/healthz"})
    kept, _ = org.slo(name="prom", source="prometheus", sli=RATIO)

    groups = render(db)["groups"]

    assert {rule["labels"]["sloth_slo"] for g in groups[:1] for rule in g["rules"]} == {"prom"}
    assert {g["name"].rsplit("-", 1)[-1] for g in groups} == {"prom"}
    assert render(db, [kept.id]) == render(db)
    with db.sessionmaker() as session:
        assert rules.render(session, []) == "groups: []\n"


def test_an_slo_without_the_window_placeholder_is_left_out_and_named(
    db: Database, org: Org, tmp_path: Path
) -> None:
    org.slo(name="fixed", source="prometheus", sli={**RATIO, "bad_query": "sum(rate(e[5m]))"})
    org.slo(name="prom", source="prometheus", sli=RATIO)
    with db.sessionmaker() as session:
        text = rules.render(session)

    assert text.startswith(
        "# left out: service:default/checkout / fixed: "
        "its queries need Sloth's {{.window}} placeholder to give a rate per window\n"
    )
    (tmp_path / "rules.yml").write_text(text)
    assert promtool_check(tmp_path / "rules.yml").returncode == 0
    assert "checkout-fixed" not in text


def test_export_writes_a_file_per_entity(db: Database, tmp_path: Path) -> None:
    checkout = Org(db, name="checkout")
    payments = Org(db, name="payments")
    checkout.slo(name="availability", source="prometheus", sli=RATIO)
    checkout.slo(name="latency", source="prometheus", sli=RATIO)
    payments.slo(name="availability", source="prometheus", sli=RATIO)
    payments.slo(name="pushed", source="events")

    with db.sessionmaker() as session:
        files = rules.export_files(session)

    assert sorted(files) == ["default-checkout.rules.yml", "default-payments.rules.yml"]
    checkout_groups = [
        g["name"] for g in yaml.safe_load(files["default-checkout.rules.yml"])["groups"]
    ]
    assert checkout_groups == [
        "sloth-slo-sli-recordings-checkout-availability",
        "sloth-slo-meta-recordings-checkout-availability",
        "sloth-slo-alerts-checkout-availability",
        "sloth-slo-sli-recordings-checkout-latency",
        "sloth-slo-meta-recordings-checkout-latency",
        "sloth-slo-alerts-checkout-latency",
    ]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        assert promtool_check(tmp_path / name).returncode == 0


def test_disabled_alerts_have_no_alert_rules(db: Database, org: Org) -> None:
    org.slo(name="quiet", source="prometheus", sli=RATIO, alerting={"page": False, "ticket": False})
    org.slo(name="ticket-only", source="prometheus", sli=RATIO, alerting={"page": False})

    groups = render(db)["groups"]

    assert [g["name"] for g in groups if "alerts" in g["name"]] == [
        "sloth-slo-alerts-checkout-ticket-only"
    ]
    (alert,) = next(g for g in groups if "alerts" in g["name"])["rules"]
    assert alert["labels"]["sloth_severity"] == "ticket"


def create_many(db: Database, org: Org, count: int) -> None:
    with db.transaction() as session:
        for index in range(count):
            service.create(
                session=session,
                actor=SYSTEM,
                data=SloIn(
                    entity=org.entity.ref,
                    name=f"slo-{index:04d}",
                    objective=99.9,
                    source="prometheus",
                    sli=RATIO,
                ),
            )


def test_rendering_1000_slos_reads_them_in_one_query(db: Database, org: Org) -> None:
    create_many(db, org, 1000)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        with db.sessionmaker() as session:
            text = rules.render(session)  # its speed is bench/slo.py's to measure
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)

    assert len(statements) == 1
    assert text.count("- record: slo:sli_error:ratio_rate5m") == 1000
    assert text.count("- alert: ") == 2000


@pytest.mark.parametrize("path", sorted(SLOTH_FIXTURES.glob("*.yml")), ids=lambda path: path.name)
def test_the_rules_file_reads_back_as_sloths_does(path: Path) -> None:
    awkward = {"on": "yes", "n": "2", "note": "a: b\n  c", "empty": "", "colon": "x:", "u": "é"}
    for spec in sloth.parse(path.read_text(), source=path.name).specs:
        groups = sloth.rules(spec, extra_labels=awkward)

        assert yaml.safe_load(rules.dump(groups)) == yaml.safe_load(sloth.dump(groups))
