"""Nothing accepted is lost, nobody is paged twice: real server processes under a burst.

- ``SIGKILL`` of the server during a burst of 10,000 alerts: after a restart every alert that
  was answered 2xx is stored and its group notified, and no notification went out twice
  (delivery is keyed by alert group, escalation stage, person and contact method).
- Two API processes and two workers on PostgreSQL under the same burst, every alert sent to
  both: one open alert per key, one group per group key, no duplicate notification.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from lamplighter.alerting.models import Alert, AlertGroup
from lamplighter.core.db import Database
from lamplighter.core.models import Job
from lamplighter.oncall.models import Delivery, EscalationPolicy
from tests.alerting.fixtures_org import Org
from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]
BURST = 10_000
SHARDS = 50  # alerts carry one of 50 "group" labels: 50 alert groups, each paged


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMPLIGHTER_")}
    env.update(
        LAMPLIGHTER_DATABASE_URL=database_url,
        LAMPLIGHTER_SECRET_KEY=TEST_SECRET,
        LAMPLIGHTER_DATA_DIR=str(tmp_path),
        LAMPLIGHTER_JOB_POLL_S="0.05",
        LAMPLIGHTER_LOG_LEVEL="WARNING",
        LAMPLIGHTER_ALERT_INGEST_RATE_PER_S="1000000",
        LAMPLIGHTER_ALERT_INGEST_BURST="1000000",
        LAMPLIGHTER_TEMPLATES_SYNC_ON_START="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


class Procs:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str], name: str, *args: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-c", "from lamplighter.cli import main; main()", *args]
        with (self.tmp_path / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        self.started.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted(self.tmp_path.glob("*.log"))
        )

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    yield started
    started.close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def org_with_policy(db: Database) -> tuple[Org, str]:
    """The service's team pages its lead and member (a team target) through a PagerDuty
    integration grouping by the ``group`` label (PagerDuty's ``payload.group``)."""
    org = Org(db)
    with db.transaction() as session:
        session.add(
            EscalationPolicy(
                team_id=org.team.id,
                name="everyone",
                is_team_default=True,
                repeat=0,
                tiers=[
                    {
                        "name": "Team",
                        "delay_minutes": 30,
                        "targets": [{"type": "team", "id": org.team.id}],
                    }
                ],
            )
        )
    _, key = org.integration("pagerduty", group_by=["group"])
    return org, key


def event(key: str, index: int) -> dict[str, object]:
    return {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": f"burst-{index}",
        "payload": {
            "summary": f"Burst alert {index}",
            "source": "burst",
            "severity": "critical",
            "group": f"shard-{index % SHARDS}",  # PagerDuty's payload.group: a label here
        },
    }


class Burst:
    """Send ``BURST`` events from a pool of clients; remember which were answered 202."""

    def __init__(self, urls: list[str], key: str, *, copies: int = 1) -> None:
        self.urls = urls
        self.key = key
        self.copies = copies
        self.accepted: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def send(self, worker: int, indexes: range) -> None:
        with httpx.Client(timeout=10) as client:
            for index in indexes:
                if self.stop.is_set():
                    return
                for copy in range(self.copies):
                    url = self.urls[(index + copy) % len(self.urls)]
                    try:
                        answer = client.post(url + "/v2/enqueue", json=event(self.key, index))
                    except httpx.HTTPError:
                        continue
                    if answer.status_code == 202:
                        with self.lock:
                            self.accepted.add(index)

    def run(self, clients: int = 8) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(clients)
        per = BURST // clients
        for worker in range(clients):
            pool.submit(self.send, worker, range(worker * per, (worker + 1) * per))
        return pool


def shard_of(alert: Alert) -> str:
    return str(alert.labels.get("group", ""))


def wait_quiet(db: Database, timeout_s: float = 180) -> None:
    """Until no job is due (the escalation's next tier is 30 minutes away)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with db.sessionmaker() as session:
            due = session.scalar(
                sa.select(sa.func.count())
                .select_from(Job)
                .where(Job.status.in_(("queued", "running")), Job.kind != "oncall.escalation_step")
            )
        if not due:
            return
        time.sleep(0.3)
    raise AssertionError("jobs still waiting")


def check_no_duplicates(db: Database) -> Counter[tuple[int, int, str, int, int]]:
    with db.sessionmaker() as session:
        sent = Counter(
            (d.group_id, d.user_id, d.channel, d.tier, d.round)
            for d in session.scalars(sa.select(Delivery).where(Delivery.status == "sent"))
        )
    duplicates = {key: count for key, count in sent.items() if count > 1}
    assert not duplicates, f"notified twice: {duplicates}"
    return sent


def test_sigkill_during_a_burst_loses_nothing_answered_and_pages_nobody_twice(
    db: Database, database_url: str, tmp_path: Path, procs: Procs
) -> None:
    org, key = org_with_policy(db)
    env = _env(database_url, tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = procs.start(env, "server-1", "serve", "--port", str(port))
    wait_up(url)
    burst = Burst([url], key)
    pool = burst.run()
    deadline = time.monotonic() + 120
    while len(burst.accepted) < BURST // 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.send_signal(signal.SIGKILL)  # mid-burst: no shutdown, no flush
    server.wait(timeout=15)
    burst.stop.set()
    pool.shutdown(wait=True)
    accepted = set(burst.accepted)
    assert BURST // 3 <= len(accepted) < BURST, procs.logs()
    # Restart: what was queued runs now.
    restarted = procs.start(env, "server-2", "serve", "--port", str(port))
    wait_up(url)
    wait_quiet(db)
    with db.sessionmaker() as session:
        stored = {
            int(alert.dedup_key.removeprefix("burst-")): alert
            for alert in session.scalars(sa.select(Alert))
        }
        groups = {g.id: g for g in session.scalars(sa.select(AlertGroup))}
    missing = accepted - set(stored)
    assert not missing, f"{len(missing)} alerts answered 202 are not stored"
    # One group per shard that got alerts; every group notified, each person once.
    shards = {shard_of(stored[index]) for index in accepted}
    assert len(groups) == len({shard_of(a) for a in stored.values()}) >= len(shards)
    sent = check_no_duplicates(db)
    notified_groups = {group_id for group_id, *_ in sent}
    assert notified_groups == set(groups), procs.logs()
    people = {org.lead.id, org.member.id}
    for group_id in groups:
        assert {user for g, user, *_ in sent if g == group_id} == people
    restarted.send_signal(signal.SIGTERM)
    restarted.wait(timeout=30)


def test_two_api_processes_and_two_workers_page_nobody_twice(
    db: Database, database_url: str, tmp_path: Path, procs: Procs
) -> None:
    """Every alert sent to both API processes at once: one open alert per key, both copies
    counted, one group per shard, each person paged once. On SQLite the processes take turns
    at the write gate's file lock (no busy sleeps, no 'database is locked')."""
    _, key = org_with_policy(db)
    env = _env(database_url, tmp_path)
    urls = []
    for name in ("api-1", "api-2"):
        port = free_port()
        procs.start(env, name, "serve", "--port", str(port), "--no-worker")
        urls.append(f"http://127.0.0.1:{port}")
    for name in ("worker-1", "worker-2"):
        procs.start(env, name, "worker")
    for url in urls:
        wait_up(url)
    burst = Burst(urls, key, copies=2)  # every alert to both API processes
    burst.run().shutdown(wait=True)
    assert len(burst.accepted) == BURST, procs.logs()
    wait_quiet(db)
    with db.sessionmaker() as session:
        open_per_key = Counter(
            session.scalars(sa.select(Alert.dedup_key).where(Alert.status != "resolved"))
        )
        occurrences = session.scalar(sa.select(sa.func.sum(Alert.occurrences)))
        group_count = session.scalar(sa.select(sa.func.count()).select_from(AlertGroup))
    assert len(open_per_key) == BURST and set(open_per_key.values()) == {1}
    assert occurrences == 2 * BURST  # both copies counted on the one alert
    assert group_count == SHARDS
    sent = check_no_duplicates(db)
    assert len(sent) == SHARDS * 2  # each group: the lead and the member, once each
