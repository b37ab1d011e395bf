"""The real Alertmanager (Debian's ``prometheus-alertmanager``, see ENVIRONMENT.md) posts its
webhook to a receiver served by the test, and ``alertmanager.parse_webhook`` reads what it sent:
the alert firing, then resolved, deduplicated by Alertmanager's own fingerprint."""

from __future__ import annotations

import datetime as dt
import http.server
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lamplighter.alerting import alertmanager
from tests.conftest import require

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Receiver:
    """A webhook receiver: keeps every body posted to it, answers 200."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[bytes] = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.put(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_body(self, timeout: float = 20.0) -> bytes:
        return self.bodies.get(timeout=timeout)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, Receiver]]:
    require(Path(ALERTMANAGER).exists(), "Alertmanager (prometheus-alertmanager)")
    receiver = Receiver()
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: lamplighter\n"
        "  group_by: [alertname, service]\n"
        "  group_wait: 1s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: lamplighter\n"
        "    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{receiver.port}/alertmanager\n"
        "        send_resolved: true\n"
    )
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Alertmanager did not start"
            time.sleep(0.1)
        yield base, receiver
    finally:
        process.kill()
        process.wait(timeout=10)
        receiver.server.shutdown()


def _post_alert(base: str, *, ends_at: dt.datetime | None = None) -> None:
    alert: dict[str, Any] = {
        "labels": {"alertname": "CheckoutErrors", "service": "checkout", "severity": "page"},
        "annotations": {
            "summary": "Checkout answers 5xx to 12 % of requests",
            "runbook_url": "https://runbooks.example.com/checkout-errors",
        },
        "generatorURL": "http://prometheus.example.com/graph?g0.expr=errors",
        "startsAt": "2026-12-06T10:00:00Z",
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat().replace("+00:00", "Z")
    answer = httpx.post(f"{base}/api/v2/alerts", json=[alert], timeout=5)
    assert answer.status_code == 200, answer.text


def test_what_alertmanager_posts_is_read_firing_then_resolved(
    running: tuple[str, Receiver],
) -> None:
    base, receiver = running
    _post_alert(base)
    body = receiver.next_body()
    # Alertmanager 0.25's own body: version 4, with the fields FORMATS.md lists.
    raw = orjson.loads(body)
    assert raw["version"] == "4"
    assert {"groupKey", "truncatedAlerts", "groupLabels", "commonLabels", "externalURL"} <= set(raw)
    fired = alertmanager.parse_webhook(body)
    assert fired.status == "firing"
    assert fired.receiver == "lamplighter"
    assert fired.group_key and "CheckoutErrors" in fired.group_key
    (alert,) = fired.alerts
    assert alert.action == "trigger"
    assert alert.summary == "Checkout answers 5xx to 12 % of requests"
    assert alert.severity == "critical"  # "page" means wake someone up
    assert alert.labels["service"] == "checkout"
    assert alert.runbook_url == "https://runbooks.example.com/checkout-errors"
    assert alert.starts_at == dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)
    assert alert.ends_at is None
    assert alert.source_url == "http://prometheus.example.com/graph?g0.expr=errors"
    # Alertmanager's own fingerprint of the label set is the dedup key.
    listed = httpx.get(f"{base}/api/v2/alerts", timeout=5).json()
    assert alert.dedup_key == listed[0]["fingerprint"]

    resolved_at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
    _post_alert(base, ends_at=resolved_at)
    deadline = time.monotonic() + 20
    while True:  # a repeat of the firing notification may come first
        batch = alertmanager.parse_webhook(receiver.next_body())
        if batch.status == "resolved":
            break
        assert time.monotonic() < deadline, "Alertmanager never sent the resolution"
    (gone,) = batch.alerts
    assert gone.action == "resolve"
    assert gone.dedup_key == alert.dedup_key  # the same alert, resolved
    assert gone.ends_at == resolved_at
