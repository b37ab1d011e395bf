"""The real Prometheus (Debian's, see ENVIRONMENT.md): it scrapes an exporter served by the test
with a known error ratio, and the engine's figures match it; the exported rules fire and
resolve the page alert in ``promtool test rules`` at the expected minutes."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lamplighter.core.db import Database
from lamplighter.core.settings import Settings
from lamplighter.slo import evaluate, prometheus, rules
from lamplighter.slo.models import Slo
from tests.conftest import require
from tests.slo.conftest import Org

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "promtool"
REQUESTS_PER_S = 100.0
ERROR_RATIO = 0.02  # 2 % of requests answer 500
FAST_RATIO = 0.97  # 97 % of requests take at most 0.5 s


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Exporter:
    """Serves /metrics: counters growing linearly with time at the known ratios, so every rate
    Prometheus computes over them has exactly those ratios."""

    def __init__(self) -> None:
        self.started = time.time()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.metrics().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def metrics(self) -> str:
        total = REQUESTS_PER_S * (time.time() - self.started)
        errors, fast = total * ERROR_RATIO, total * FAST_RATIO
        return (
            "# TYPE http_requests_total counter\n"
            f'http_requests_total{{code="200"}} {total - errors}\n'
            f'http_requests_total{{code="500"}} {errors}\n'
            "# TYPE http_request_duration_seconds histogram\n"
            f'http_request_duration_seconds_bucket{{le="0.1"}} {total * 0.9}\n'
            f'http_request_duration_seconds_bucket{{le="0.5"}} {fast}\n'
            f'http_request_duration_seconds_bucket{{le="+Inf"}} {total}\n'
            f"http_request_duration_seconds_sum {total * 0.12}\n"
            f"http_request_duration_seconds_count {total}\n"
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require(Path(PROMETHEUS).is_file(), "prometheus (Debian package)")
    exporter = Exporter()
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: app\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{exporter.port}']\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(lambda: httpx.get(f"{url}/-/ready").status_code == 200, "Prometheus to start")

        def samples() -> int:
            answer = httpx.get(
                f"{url}/api/v1/query",
                params={"query": 'count_over_time(http_requests_total{code="500"}[1m])'},
            ).json()
            result = answer["data"]["result"]
            return int(float(result[0]["value"][1])) if result else 0

        _wait(lambda: samples() >= 4, "four scrapes of the exporter")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        exporter.close()


def evaluate_all(db: Database, settings: Settings) -> None:
    with db.transaction() as session:
        slos = list(session.scalars(sa.select(Slo).order_by(Slo.id)))
        evaluate.evaluate(session=session, slos=slos, prometheus=prometheus.measure_for(settings))


def stored(db: Database, slo_id: int) -> Slo:
    with db.sessionmaker() as session:
        slo = session.get(Slo, slo_id)
        assert slo is not None
        session.expunge(slo)
        return slo


def test_the_engine_reads_the_error_ratio_prometheus_scraped(
    db: Database, org: Org, settings: Settings, prometheus_url: str
) -> None:
    availability, _ = org.slo(
        name="availability",
        objective=99.0,
        source="prometheus",
        sli={
            "kind": "ratio",
            "bad_query": 'sum(rate(http_requests_total{code="500"}[{{.window}}]))',
            "total_query": "sum(rate(http_requests_total[{{.window}}]))",
        },
    )
    latency, _ = org.slo(
        name="latency",
        objective=95.0,
        source="prometheus",
        sli={
            "kind": "latency",
            "metric": "http_request_duration_seconds",
            "threshold_s": 0.5,
            "selector": 'job="app"',
        },
    )
    started = time.monotonic()

    evaluate_all(db, settings.model_copy(update={"prometheus_url": prometheus_url}))

    assert time.monotonic() - started < 10
    measured = stored(db, availability.id)
    assert measured.status != "no data", measured.status_reason
    assert measured.attainment == pytest.approx(1 - ERROR_RATIO, abs=1e-4)
    # Burn rate = error ratio / error budget = 0.02 / 0.01, over every lookback.
    for window in ("5m", "30m", "1h", "6h", "3d"):
        assert measured.burn_rates[window] == pytest.approx(ERROR_RATIO / (1 - 0.99), rel=1e-3)
    assert measured.total_events is not None and measured.total_events > 100
    assert measured.good_events == pytest.approx(measured.total_events * 0.98, rel=1e-4)
    assert measured.status == "exhausted"  # 2 % errors against a 1 % budget
    # 2x is below the page factors (14.4, 6) and the 1d/2h ticket's 3x: only the 3d/6h fires.
    assert measured.firing == ["ticket-3d"]
    fast = stored(db, latency.id)
    assert fast.attainment == pytest.approx(FAST_RATIO, abs=1e-4)
    assert fast.budget_remaining == pytest.approx(1 - (1 - FAST_RATIO) / 0.05, abs=1e-3)
    assert fast.status == "warning"  # 60 % of the budget spent


def test_an_unreachable_prometheus_is_no_data_with_the_reason(
    db: Database, org: Org, settings: Settings
) -> None:
    slo, _ = org.slo(
        name="availability",
        source="prometheus",
        sli={"kind": "raw", "error_ratio_query": "1 - avg(up[{{.window}}])"},
    )
    port = free_port()  # nothing listens there

    evaluate_all(db, settings.model_copy(update={"prometheus_url": f"http://127.0.0.1:{port}"}))

    measured = stored(db, slo.id)
    assert measured.status == "no data"
    assert measured.status_reason.startswith(
        f"Prometheus at http://127.0.0.1:{port} is unreachable"
    )
    assert measured.attainment is None and measured.budget_remaining is None


def test_promtool_fires_and_resolves_the_page_alert(db: Database, org: Org, tmp_path: Path) -> None:
    require(Path(PROMTOOL).is_file(), "promtool (Debian prometheus package)")
    org.slo(
        name="availability",
        objective=99.9,
        source="prometheus",
        sli={
            "kind": "ratio",
            "bad_query": 'sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))',
            "total_query": 'sum(rate(http_requests_total{job="checkout"}[{{.window}}]))',
        },
        alerting={"labels": {"routing": "checkout-oncall"}},
    )
    with db.sessionmaker() as session:
        (tmp_path / "rules.yml").write_text(rules.render(session))
    test_file = tmp_path / "page-alert.test.yml"
    shutil.copy(FIXTURES / "page-alert.test.yml", test_file)

    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "rules.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", test_file.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 17 rules found" in checked.stdout
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_notices_a_page_that_does_not_fire(db: Database, org: Org, tmp_path: Path) -> None:
    """The unit test has teeth: with the page alert disabled, its expectations fail."""
    require(Path(PROMTOOL).is_file(), "promtool (Debian prometheus package)")
    org.slo(
        name="availability",
        objective=99.9,
        source="prometheus",
        sli={
            "kind": "ratio",
            "bad_query": 'sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))',
            "total_query": 'sum(rate(http_requests_total{job="checkout"}[{{.window}}]))',
        },
        alerting={"page": False, "labels": {"routing": "checkout-oncall"}},
    )
    with db.sessionmaker() as session:
        (tmp_path / "rules.yml").write_text(rules.render(session))
    shutil.copy(FIXTURES / "page-alert.test.yml", tmp_path / "page-alert.test.yml")

    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "page-alert.test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert tested.returncode == 1
    assert "FAILED" in tested.stdout + tested.stderr
    output = tested.stdout + tested.stderr
    # The page expected when the burst is two minutes old, and still at 159m, is missing.
    assert "time: 2h2m," in output and "time: 2h39m," in output
    assert "time: 1h59m," not in output and "time: 2h40m," not in output
