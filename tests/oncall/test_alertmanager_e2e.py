"""The whole chain with the real parts (Debian's Prometheus and Alertmanager, ENVIRONMENT.md):
a rule fires in Prometheus, Alertmanager posts to Lamplighter, the alert routes to the on-call
person of the owning team, an email reaches a local SMTP server (aiosmtpd) and a webhook sink
is called with the signed notification; the acknowledge link in the email stops the
escalation; the rule stops firing and the resolution flows through to the alert group."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import http.server
import queue
import re
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

from lamplighter.alerting.models import AlertGroup
from lamplighter.app import create_app
from lamplighter.core import jobs
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import Job
from lamplighter.core.settings import Settings
from lamplighter.oncall.models import (
    ContactMethod,
    Delivery,
    Escalation,
    EscalationPolicy,
    NotificationRule,
    OnCallSchedule,
)
from tests.alerting.fixtures_org import Org
from tests.conftest import require
from tests.helpers import serve

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
WEBHOOK_SECRET = "e2e-webhook-signing-key-0123"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink:
    """An HTTP server that serves /metrics (a gauge the test flips) and records webhooks."""

    def __init__(self) -> None:
        self.failing = 1
        self.hooks: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"# TYPE e2e_checkout_failing gauge\ne2e_checkout_failing {sink.failing}\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                sink.hooks.put((dict(self.headers), self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free port, keeping every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: queue.Queue[email.message.EmailMessage] = queue.Queue()
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                mailbox.messages.put(message)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def wait_for(condition: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Sink, Mailbox]]:
    require(Path(PROMETHEUS).is_file(), "prometheus (Debian package)")
    require(Path(ALERTMANAGER).is_file(), "Alertmanager (prometheus-alertmanager)")
    sink, mailbox = Sink(), Mailbox()
    try:
        yield sink, mailbox
    finally:
        sink.close()
        mailbox.close()


def test_a_prometheus_rule_pages_the_on_call_by_email_and_webhook_until_acknowledged(
    db: Database, settings: Settings, tmp_path: Path, parts: tuple[Sink, Mailbox]
) -> None:
    sink, mailbox = parts
    org = Org(db)
    on_call = org.member
    settings = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox.port,
            "smtp_from": "pager@lamplighter.example",
            "outbound_allow_internal": "127.0.0.0/8",
        }
    )
    box = SecretBox(settings.effective_secret_key())
    with db.transaction() as session:
        schedule = OnCallSchedule(
            team_id=org.team.id,
            name="frontline",
            layers=[
                {
                    "name": "only",
                    "kind": "rotation",
                    "until": None,
                    "versions": [
                        {
                            "effective_from": "2026-01-01T00:00:00+00:00",
                            "participants": [on_call.id],
                            "kind": "weekly",
                            "every": 1,
                            "anchor": "2026-01-05T09:00:00+00:00",
                            "time_zone": "UTC",
                            "restrictions": [],
                        }
                    ],
                }
            ],
        )
        session.add(schedule)
        session.flush()
        session.add(
            EscalationPolicy(
                team_id=org.team.id,
                name="checkout",
                is_team_default=True,
                tiers=[
                    {
                        "name": "Frontline",
                        "delay_minutes": 5,
                        "targets": [{"type": "schedule", "id": schedule.id}],
                    },
                    {
                        "name": "Lead",
                        "delay_minutes": 5,
                        "targets": [{"type": "user", "id": org.lead.id}],
                    },
                ],
            )
        )
        mail = ContactMethod(user_id=on_call.id, kind="email", address=on_call.email)
        hook = ContactMethod(
            user_id=on_call.id,
            kind="webhook",
            address=box.encrypt(f"http://127.0.0.1:{sink.port}/pager"),
            address_hint="http://127.0.0.1:…/pager",
            secret_encrypted=box.encrypt(WEBHOOK_SECRET),
        )
        session.add_all([mail, hook])
        session.flush()
        session.add_all(
            [
                NotificationRule(user_id=on_call.id, contact_method_id=mail.id, delay_minutes=0),
                NotificationRule(user_id=on_call.id, contact_method_id=hook.id, delay_minutes=0),
            ]
        )
    _, key = org.integration("alertmanager")

    app = create_app(settings, db=db)
    worker = jobs.Worker(db, settings)
    stop = threading.Event()

    def run_worker() -> None:
        while not stop.is_set():
            if not worker.run_once():
                time.sleep(0.05)

    with serve(app) as lamplighter:
        settings.base_url = lamplighter  # the links in the notifications point here
        runner = threading.Thread(target=run_worker, daemon=True)
        runner.start()
        am_port, prom_port = free_port(), free_port()
        (tmp_path / "alertmanager.yml").write_text(
            "route:\n  receiver: lamplighter\n  group_by: [alertname]\n"
            "  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: lamplighter\n    webhook_configs:\n"
            f"      - url: {lamplighter}/api/v1/alerting/ingest/alertmanager/{key}\n"
            "        send_resolved: true\n"
        )
        (tmp_path / "rules.yml").write_text(
            "groups:\n  - name: checkout\n    rules:\n      - alert: CheckoutFailing\n"
            "        expr: e2e_checkout_failing > 0\n        labels: {severity: page}\n"
            "        annotations:\n          summary: Checkout is failing\n"
            "          runbook_url: https://runbooks.example.com/checkout-failing\n"
        )
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files: [rules.yml]\n"
            f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n"
            f"scrape_configs:\n  - job_name: checkout\n    static_configs:\n      - targets: ['127.0.0.1:{sink.port}']\n"
        )
        alertmanager = start(
            [
                ALERTMANAGER,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            tmp_path / "alertmanager.log",
        )
        prometheus = start(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
        )
        try:
            # Fired: the rule, Alertmanager, the receiver, a group of the owning team.
            group = wait_for(lambda: _group(db), "the alert group", timeout_s=90)
            assert group.team_id == org.team.id and group.severity == "critical"
            assert group.runbook_url == "https://runbooks.example.com/checkout-failing"
            message = mailbox.messages.get(timeout=30)
            assert message["To"] == on_call.email
            assert (
                "[CRITICAL]" in message["Subject"] and "Checkout is failing" in message["Subject"]
            )
            body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
            assert "https://runbooks.example.com/checkout-failing" in body
            headers, posted = sink.hooks.get(timeout=30)
            signature = {k.lower(): v for k, v in headers.items()}["x-lamplighter-signature-256"]
            expected = hmac.new(WEBHOOK_SECRET.encode(), posted, hashlib.sha256).hexdigest()
            assert signature == f"sha256={expected}"  # signed like the event webhooks
            assert b"Checkout is failing" in posted
            # The lead (second tier) is not told yet; the on-call acknowledges from the email.
            ack_url = re.search(r"(http://\S+/alerts/act/\S+)", body)
            assert ack_url, body
            with httpx.Client() as client:
                landing = client.get(ack_url.group(1).rstrip(">."))
                assert landing.status_code == 200
                done = client.post(ack_url.group(1).rstrip(">."))
                assert done.status_code in (200, 303)
            wait_for(lambda: _status(db) == "acknowledged", "the acknowledgement")
            wait_for(lambda: _escalation_state(db, group.id) == "stopped", "the escalation to stop")
            # The second tier comes due: nobody more is told.
            with db.transaction() as session:
                session.execute(
                    sa.update(Job)
                    .where(Job.kind == "oncall.escalation_step")
                    .values(due_at=utcnow() - dt.timedelta(minutes=1))
                )
            wait_for(lambda: _steps_left(db) == 0, "the second tier's step")
            with db.sessionmaker() as session:
                told = {
                    d.user_id
                    for d in session.scalars(sa.select(Delivery).where(Delivery.status == "sent"))
                }
            assert told == {on_call.id}
            # The rule stops firing: Alertmanager sends the resolution, the group resolves.
            sink.failing = 0
            wait_for(lambda: _status(db) == "resolved", "the resolution", timeout_s=90)
        finally:
            stop.set()
            runner.join(timeout=10)
            for process in (prometheus, alertmanager):
                process.kill()
                process.wait(timeout=10)


def _escalation_state(db: Database, group_id: int) -> str | None:
    with db.sessionmaker() as session:
        escalation = session.get(Escalation, group_id)
        return escalation.state if escalation is not None else None


def _steps_left(db: Database) -> int:
    with db.sessionmaker() as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(Job)
                .where(Job.kind == "oncall.escalation_step", Job.status == "queued")
            )
            or 0
        )


def _status(db: Database) -> str | None:
    group = _group(db)
    return group.status if group is not None else None


def _group(db: Database) -> AlertGroup | None:
    with db.sessionmaker() as session:
        return session.scalars(sa.select(AlertGroup).order_by(AlertGroup.id)).first()
