"""Measuring SLOs through the Prometheus HTTP API, against a fake Prometheus (MockTransport)."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from lamplighter.core import outbound
from lamplighter.core.settings import Settings
from lamplighter.slo import prometheus
from lamplighter.slo.evaluate import Measured
from lamplighter.slo.models import Slo
from lamplighter.slo.service import BURN_WINDOWS

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
WINDOW_START = NOW - dt.timedelta(days=30)
URL = "http://prometheus.test:9090"


def make_settings(**fields: Any) -> Settings:
    values: dict[str, Any] = {"secret_key": "x" * 40, "prometheus_url": URL}
    values.update(fields)
    return Settings(**values)


def make_slo(sli: dict[str, Any]) -> Slo:
    return Slo(id=1, name="availability", objective=0.99, source="prometheus", sli=sli)


Answer = Callable[[str], Any]


class FakePrometheus:
    """Answers instant queries with ``answer(query)``: a number, a (status, body) pair, or an
    exception to raise. Records what it was asked."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.path == "/api/v1/query"
        result = self.answer(request.url.params["query"])
        if isinstance(result, Exception):
            raise result
        if isinstance(result, tuple):
            status, body = result
            return httpx.Response(status, json=body)
        return httpx.Response(
            200,
            json={
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, result]}]},
            },
        )

    @property
    def queries(self) -> list[str]:
        return [request.url.params["query"] for request in self.requests]


def measure(fake: FakePrometheus, sli: dict[str, Any], **settings: Any) -> Measured:
    measure_fn = prometheus.measure_for(
        make_settings(**settings), transport=httpx.MockTransport(fake)
    )
    assert measure_fn is not None
    return measure_fn(make_slo(sli), WINDOW_START, NOW, BURN_WINDOWS)


def window_of(query: str) -> str:
    return query.split("[", 1)[1].split("]", 1)[0]


SECONDS = {"5m": 300, "30m": 1800, "1h": 3600, "2h": 7200, "6h": 21600, "1d": 86400}
SECONDS |= {"3d": 259200, "30d": 2592000}


def test_no_prometheus_url_means_no_measuring() -> None:
    assert prometheus.measure_for(make_settings(prometheus_url="")) is None


def test_a_bad_events_ratio_counts_rate_times_seconds_for_every_window() -> None:
    # 10 requests/s, 0.2/s of them bad: 2 % bad over every range.
    fake = FakePrometheus(lambda q: "0.2" if "5.." in q else "10")
    sli = {
        "kind": "ratio",
        "bad_query": 'sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))',
        "total_query": "sum(rate(http_requests_total[{{.window}}]))",
    }

    measured = measure(fake, sli)

    assert measured.no_data is None
    assert measured.window is not None
    assert measured.window.total == pytest.approx(10 * SECONDS["30d"])
    assert measured.window.good == pytest.approx(9.8 * SECONDS["30d"])
    assert set(measured.lookbacks) == set(BURN_WINDOWS)
    five = measured.lookbacks[dt.timedelta(minutes=5)]
    assert (five.good, five.total) == pytest.approx((9.8 * 300, 3000))
    # {{.window}} became each range in Sloth's spelling, asked at `now`.
    assert sorted({window_of(q) for q in fake.queries}) == sorted(SECONDS)
    assert "{{" not in "".join(fake.queries)
    assert {r.url.params["time"] for r in fake.requests} == {f"{NOW.timestamp():.3f}"}
    # The user's PromQL is bounded on Prometheus too, by the same timeout as our wait.
    assert {r.url.params["timeout"] for r in fake.requests} == {"10s"}


def test_a_good_events_ratio_counts_the_good_ones() -> None:
    fake = FakePrometheus(lambda q: "9.5" if "good" in q else "10")
    sli = {
        "kind": "ratio",
        "good_query": "sum(rate(good_total[{{.window}}]))",
        "total_query": "sum(rate(all_total[{{.window}}]))",
    }

    measured = measure(fake, sli)

    one_hour = measured.lookbacks[dt.timedelta(hours=1)]
    assert one_hour.good / one_hour.total == pytest.approx(0.95)
    assert one_hour.total == pytest.approx(36000)


def test_a_latency_sli_reads_the_threshold_bucket_over_the_count() -> None:
    fake = FakePrometheus(lambda q: "97" if "_bucket" in q else "100")
    sli = {
        "kind": "latency",
        "metric": "http_request_duration_seconds",
        "threshold_s": 0.5,
        "selector": 'job="api"',
    }

    measured = measure(fake, sli)

    assert measured.window is not None
    assert measured.window.good / measured.window.total == pytest.approx(0.97)
    assert 'sum(rate(http_request_duration_seconds_bucket{job="api",le="0.5"}[5m]))' in (
        fake.queries
    )
    assert 'sum(rate(http_request_duration_seconds_count{job="api"}[5m]))' in fake.queries


def test_a_latency_threshold_of_whole_seconds_is_written_as_go_writes_le() -> None:
    fake = FakePrometheus(lambda q: "1")
    measure(fake, {"kind": "latency", "metric": "lat", "threshold_s": 1.0, "selector": ""})

    assert 'sum(rate(lat_bucket{le="1"}[1h]))' in fake.queries
    assert "sum(rate(lat_count{}[1h]))" in fake.queries


def test_a_raw_sli_knows_only_the_ratio() -> None:
    fake = FakePrometheus(lambda q: "0.004")
    measured = measure(fake, {"kind": "raw", "error_ratio_query": "errs[{{.window}}]"})

    assert measured.window is not None
    assert measured.window.ratio_only
    assert measured.window.good == pytest.approx(0.996)
    assert measured.window.total == 1
    assert fake.queries[0] == "errs[30d]"


def test_a_threshold_sli_counts_good_minutes_by_subqueries() -> None:
    fake = FakePrometheus(lambda q: "55" if q.startswith("sum_over_time") else "60")
    sli = {"kind": "threshold", "query": "max(queue_depth)", "op": "lt", "value": 100}

    measured = measure(fake, sli)

    one_hour = measured.lookbacks[dt.timedelta(hours=1)]
    assert (one_hour.good, one_hour.total) == (55, 60)
    assert "sum_over_time(((max(queue_depth)) < bool 100)[1h:1m])" in fake.queries
    assert "count_over_time((max(queue_depth))[1h:1m])" in fake.queries


def test_the_bearer_token_is_sent_when_set() -> None:
    fake = FakePrometheus(lambda q: "1")
    measure(fake, {"kind": "raw", "error_ratio_query": "x"}, prometheus_token=SecretStr("s3cr3t"))

    assert {r.headers.get("authorization") for r in fake.requests} == {"Bearer s3cr3t"}


def test_no_token_no_authorization_header() -> None:
    fake = FakePrometheus(lambda q: "1")
    measure(fake, {"kind": "raw", "error_ratio_query": "x"})

    assert all("authorization" not in r.headers for r in fake.requests)


RATIO = {
    "kind": "ratio",
    "bad_query": "sum(rate(bad[{{.window}}]))",
    "total_query": "sum(rate(total[{{.window}}]))",
}


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            (
                400,
                {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": 'parse error: unexpected ")"',
                },
            ),
            'query sum(rate(bad[30d])) failed: HTTP 400, bad_data: parse error: unexpected ")"',
        ),
        (
            (503, {"status": "error", "errorType": "unavailable", "error": "shutting down"}),
            "query sum(rate(bad[30d])) failed: HTTP 503, unavailable: shutting down",
        ),
        ("NaN", "query sum(rate(bad[30d])) returned NaN"),
        ("+Inf", "query sum(rate(bad[30d])) returned +Inf"),
        (
            (200, {"status": "success", "data": {"resultType": "vector", "result": []}}),
            "query sum(rate(bad[30d])) returned no series",
        ),
    ],
    ids=["query-error", "server-error", "nan", "inf", "empty"],
)
def test_an_unusable_answer_is_no_data_with_the_reason(answer: Any, reason: str) -> None:
    fake = FakePrometheus(lambda q: answer if "bad" in q else "10")

    measured = measure(fake, RATIO)

    assert measured.window is None and not measured.lookbacks
    assert measured.no_data is not None
    assert measured.no_data.startswith(reason)


def test_a_scalar_answer_is_a_number() -> None:
    fake = FakePrometheus(
        lambda q: (
            200,
            {"status": "success", "data": {"resultType": "scalar", "result": [0, "0.5"]}},
        )
    )

    measured = measure(fake, {"kind": "raw", "error_ratio_query": "vector(0.5)"})

    assert measured.window is not None and measured.window.good == pytest.approx(0.5)


def test_an_html_error_page_is_no_data() -> None:
    def transport(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    measure_fn = prometheus.measure_for(make_settings(), transport=httpx.MockTransport(transport))
    assert measure_fn is not None

    measured = measure_fn(make_slo(RATIO), WINDOW_START, NOW, BURN_WINDOWS)

    assert measured.no_data == (
        "query sum(rate(total[30d])) failed: HTTP 502 without a Prometheus answer"
    )


def test_after_a_connection_failure_the_run_stops_asking() -> None:
    fake = FakePrometheus(lambda q: httpx.ConnectError("Connection refused"))
    measure_fn = prometheus.measure_for(make_settings(), transport=httpx.MockTransport(fake))
    assert measure_fn is not None

    first = measure_fn(make_slo(RATIO), WINDOW_START, NOW, BURN_WINDOWS)
    second = measure_fn(make_slo(RATIO), WINDOW_START, NOW, BURN_WINDOWS)

    assert first.no_data == f"Prometheus at {URL} is unreachable: Connection refused"
    assert second.no_data == f"{first.no_data} (not asked again in this run)"
    assert len(fake.requests) == 1
    # A new run (a new measuring function) tries again.
    fresh = prometheus.measure_for(make_settings(), transport=httpx.MockTransport(fake))
    assert fresh is not None
    fresh(make_slo(RATIO), WINDOW_START, NOW, BURN_WINDOWS)
    assert len(fake.requests) == 2


def test_a_timeout_is_no_data_naming_the_limit() -> None:
    fake = FakePrometheus(lambda q: httpx.ReadTimeout("timed out"))

    measured = measure(fake, RATIO, prometheus_timeout_s=2.5)

    assert measured.no_data == (
        f"Prometheus at {URL} did not answer within 2.5 s (query sum(rate(total[30d]))): "
        "ReadTimeout"
    )


def test_a_window_just_begun_has_no_events_yet() -> None:
    fake = FakePrometheus(lambda q: "1")
    measure_fn = prometheus.measure_for(make_settings(), transport=httpx.MockTransport(fake))
    assert measure_fn is not None

    measured = measure_fn(make_slo(RATIO), NOW, NOW, BURN_WINDOWS)

    assert measured.window is not None and measured.window.total == 0
    assert measured.lookbacks[dt.timedelta(minutes=5)].total == 300


# -- the outbound policy -----------------------------------------------------------------------


def test_the_prometheus_host_is_allowed_though_internal_and_nothing_else_is() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return {"prometheus.internal": ["10.1.2.3"], "other.internal": ["10.1.2.4"]}[host]

    original = outbound.RESOLVER
    outbound.RESOLVER = resolver
    try:
        policy = prometheus.prometheus_policy(make_settings(), "http://prometheus.internal:9090")
        assert policy.refusal(outbound.literal_address("10.1.2.3")) is None  # type: ignore[arg-type]
        with pytest.raises(outbound.Refused, match="an internal or reserved address"):
            policy.check_url("http://other.internal/", resolve=True)
        with pytest.raises(outbound.Refused, match="a cloud metadata address"):
            policy.check_url("http://169.254.169.254/latest/meta-data", resolve=True)
    finally:
        outbound.RESOLVER = original


def test_a_metadata_address_as_prometheus_is_still_refused() -> None:
    measure_fn = prometheus.measure_for(make_settings(prometheus_url="http://169.254.169.254"))
    assert measure_fn is not None

    measured = measure_fn(make_slo(RATIO), WINDOW_START, NOW, BURN_WINDOWS)

    assert measured.no_data == (
        "Prometheus at http://169.254.169.254: refused by the outbound policy: "
        "it is a cloud metadata address"
    )


def test_a_real_socket_to_a_closed_local_port_is_unreachable_quickly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    measure_fn = prometheus.measure_for(make_settings(prometheus_url=f"http://127.0.0.1:{port}"))
    assert measure_fn is not None

    measured = measure_fn(make_slo(RATIO), WINDOW_START, NOW, BURN_WINDOWS)

    assert measured.no_data is not None
    assert measured.no_data.startswith(f"Prometheus at http://127.0.0.1:{port} is unreachable")
