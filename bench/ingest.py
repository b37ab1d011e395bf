"""Benchmark: alert intake and escalation (issue 14), with Alertmanager as the peer.

Lamplighter runs as each database is deployed: on SQLite, ``lamplighter serve [--workers N]``
with its job worker in the serving process (the API processes take turns at SQLite's one write
lock through the write gate's lock file, without SQLite's busy sleeps); on PostgreSQL,
``lamplighter serve --no-worker [--workers N]`` and ``lamplighter worker`` processes, on a
freshly migrated database that has no statistics yet. Alertmanager (Debian's) runs beside it;
wrk drives both in alternating rounds, since a shared 2-core machine drifts within minutes, and
each round waits for a quiet machine (Alertmanager goes on aggregating its round's alerts at 1.4
cores for up to 20 s). Every alert Lamplighter answers 2xx is committed; Alertmanager keeps its
alerts in memory.

- Alertmanager-webhook batches of 100 new alerts per request (Lamplighter's receiver) against
  Alertmanager's own ``POST /api/v2/alerts`` with the same 100 alerts — target >= 50,000
  alerts/s;
- single PagerDuty Events v2 triggers (``/v2/enqueue``) against Alertmanager's v2 API with one
  alert — target >= 3,000 events/s, p99 < 50 ms;
- alert -> first notification handed to its channel at a steady 1,000 alerts/s (each request
  sent at its own time by :func:`paced_posts`), every alert its own group (``group_by: [@dedup_key]``), so every one pages:
  the time from the group's creation to its first delivery (the in-app inbox, the first rule),
  from the delivery log — target p99 < 500 ms;
- 10,000 escalations in progress at once (in-process, on the same database): 10,000 groups
  started, each with a second tier due a minute later; the worker runs the steps and each
  step's lateness against its due time is measured — target every step within 1 s;
- "who is on call now" for an entity (``GET /api/v1/oncall/now?entity=``), wrk — p99 < 20 ms.

    python bench/ingest.py [--seconds 5] [--rounds 3] [--pg-url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import cli, cpu_check, free_port, machine, settle, spawn_cli, wait_http
from http_get import parse_wrk

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"

# wrk scripts: each request carries new alerts. Keys are the run's token (new for every wrk run,
# __RUN__), the wrk thread's number (set by setup(); every thread starts from the same Lua random
# seed, so random numbers would repeat across threads) and a counter in that thread.
THREAD_SETUP_LUA = r"""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
"""
AM_BATCH_LUA = r"""
local counter = 0
local thread_id = "__RUN__"
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, 100 do
    local fp = thread_id .. "-" .. tid .. "-" .. counter .. "-" .. i
    parts[i] = '{"status":"firing","labels":{"alertname":"BenchHigh","instance":"' .. fp ..
      '","severity":"critical"},"annotations":{"summary":"bench ' .. fp ..
      '"},"startsAt":"2026-12-06T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"' ..
      fp .. '"}'
  end
  local body = '{"version":"4","groupKey":"{}:{alertname=\\"BenchHigh\\"}","truncatedAlerts":0,' ..
    '"status":"firing","receiver":"lamplighter","groupLabels":{"alertname":"BenchHigh"},' ..
    '"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","alerts":[' ..
    table.concat(parts, ",") .. ']}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""

AM_PEER_BATCH_LUA = r"""
local counter = 0
local thread_id = "__RUN__"
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, 100 do
    local fp = thread_id .. "-" .. tid .. "-" .. counter .. "-" .. i
    parts[i] = '{"labels":{"alertname":"BenchHigh","instance":"' .. fp ..
      '","severity":"critical"},"annotations":{"summary":"bench ' .. fp .. '"}}'
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    "[" .. table.concat(parts, ",") .. "]")
end
"""

PD_LUA = r"""
local counter = 0
local thread_id = "__RUN__"
local key = "__KEY__"
request = function()
  counter = counter + 1
  local body = '{"routing_key":"' .. key .. '","event_action":"trigger","dedup_key":"' ..
    thread_id .. "-" .. tid .. "-" .. counter .. '","payload":{"summary":"Disk ' .. counter ..
    ' full","source":"db-1","severity":"critical"}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
__DELAY__
"""

AM_PEER_SINGLE_LUA = r"""
local counter = 0
local thread_id = "__RUN__"
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '[{"labels":{"alertname":"Disk","instance":"' .. thread_id .. "-" .. tid .. "-" .. counter .. '"}}]')
end
"""


SETTLED: list[float] = []  # seconds waited for a quiet machine before each round
SETTLE_S = [60.0]  # the longest wait (--settle-seconds)


def run_wrk(
    url: str, script: Path, *, seconds: int, connections: int, threads: int = 2
) -> dict[str, float]:
    # Each round starts on a quiet machine: Alertmanager goes on aggregating the alerts of its
    # round for many seconds (at 1.4 cores), our worker pages for the groups of ours.
    SETTLED.append(settle(SETTLE_S[0]))
    # A fresh token per run: no key of this run was sent before.
    text = script.read_text().replace("__RUN__", uuid.uuid4().hex[:12])
    if "function setup" not in text:
        text = THREAD_SETUP_LUA + text
    script = script.with_name(f"run-{script.name}")
    script.write_text(text)
    result = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return parse_wrk(result.stdout)


def paced_posts(
    url: str, body_of: Any, *, rate: float, seconds: float, connections: int = 64
) -> dict[str, float]:
    """POST ``rate`` requests a second for ``seconds``, each sent at its own time (t0 + i/rate)
    on whichever of ``connections`` keep-alive connections is free: a constant-rate load (wrk2
    is not packaged here, and wrk's ``delay`` paces by the response time). Plain asyncio
    streams, a few microseconds a request. ``body_of(i)`` gives the i-th body."""
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path

    async def run() -> dict[str, float]:
        free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        for _ in range(connections):
            free.put_nowait(await asyncio.open_connection(host, port))
        statuses: list[int] = []
        latencies: list[float] = []
        late_starts = 0

        async def one(index: int) -> None:
            nonlocal late_starts
            if free.empty():
                late_starts += 1
            reader, writer = await free.get()
            body = body_of(index)
            started = time.perf_counter()
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses.append(int(head.split(b" ", 2)[1]))
            free.put_nowait((reader, writer))

        tasks = []
        t0 = time.perf_counter()
        total = int(rate * seconds)
        for index in range(total):
            delay = t0 + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        while not free.empty():
            free.get_nowait()[1].close()
        latencies.sort()
        return {
            "sent": total,
            "rate": total / elapsed,
            "non_2xx": sum(1 for status in statuses if not 200 <= status < 300),
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "waited_for_a_connection": late_starts,
        }

    return asyncio.run(run())


def start_alertmanager(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = work / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    log = (work / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={work / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/-/ready")
    return process, url


def organisation(env: dict[str, str]) -> dict[str, Any]:
    """A team owning a service, a weekly schedule and a default policy, integrations."""
    script = r"""
import json, os, sys
from lamplighter.core.settings import Settings
from lamplighter.core.db import Database
from lamplighter import domains
from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.catalog import service as catalog
from lamplighter.alerting import integrations
from lamplighter.alerting.schemas import IntegrationIn
from lamplighter.oncall.models import OnCallSchedule, EscalationPolicy

settings = Settings()
domains.load(settings)
db = Database(settings.effective_database_url)
system = Actor.system("bench")
out = {}
with db.transaction() as s:
    users = [identity.create_user(session=s, actor=system, email=f"oncall{i}@example.com", display_name=f"On call {i}") for i in range(3)]
    team = identity.create_team(session=s, actor=system, slug="payments", name="Payments", lead_email=users[0].email)
    for u in users[1:]:
        identity.add_member(session=s, actor=system, slug="payments", email=u.email)
    entity = catalog.create(session=s, actor=system, data=catalog.EntityInput(kind="service", name="checkout", owner="payments"))
    sched = OnCallSchedule(team_id=team.id, name="frontline", layers=[{"name": "weekly", "kind": "rotation", "until": None, "versions": [{"effective_from": "2026-01-05T00:00:00+00:00", "participants": [u.id for u in users], "kind": "weekly", "every": 1, "anchor": "2026-01-05T09:00:00+00:00", "time_zone": "UTC", "restrictions": []}]}])
    s.add(sched); s.flush()
    pol = EscalationPolicy(team_id=team.id, name="checkout", is_team_default=True, repeat=0, tiers=[{"name": "Frontline", "delay_minutes": 10, "targets": [{"type": "schedule", "id": sched.id}]}, {"name": "Lead", "delay_minutes": 5, "targets": [{"type": "user", "id": users[0].id}]}])
    s.add(pol); s.flush()
    for name, kind, group_by in (("alertmanager", "alertmanager", ["@group_key"]), ("pagerduty", "pagerduty", []), ("pagerduty-each", "pagerduty", ["@dedup_key"])):
        integration, key = integrations.create(session=s, actor=system, data=IntegrationIn(name=name, kind=kind, entity="checkout", group_by=group_by))
        out[name] = key
    out["entity"] = entity.ref
    out["policy_id"] = pol.id
    _, out["token"] = identity.create_token(session=s, actor=system, user_id=users[0].id, name="bench", expires_at=None)
print(json.dumps(out))
"""
    import json

    result = subprocess.run(
        [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
    )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def notification_latency(env: dict[str, str], since: str) -> dict[str, float]:
    """First delivery minus group creation, for the groups opened since ``since``."""
    script = r"""
import json, sys, datetime as dt
import sqlalchemy as sa
from lamplighter.core.settings import Settings
from lamplighter.core.db import Database
from lamplighter import domains
from lamplighter.alerting.models import AlertGroup
from lamplighter.oncall.models import Delivery
settings = Settings(); domains.load(settings)
db = Database(settings.effective_database_url)
since = dt.datetime.fromisoformat(sys.argv[1])
with db.sessionmaker() as s:
    first = sa.select(Delivery.group_id, sa.func.min(Delivery.at).label("at")).where(Delivery.status == "sent").group_by(Delivery.group_id).subquery()
    rows = s.execute(sa.select(AlertGroup.created_at, first.c.at).join(first, first.c.group_id == AlertGroup.id).where(AlertGroup.created_at >= since)).all()
    opened = s.scalar(sa.select(sa.func.count()).select_from(AlertGroup).where(AlertGroup.created_at >= since))
lat = sorted(((b if b.tzinfo else b.replace(tzinfo=dt.UTC)) - (a if a.tzinfo else a.replace(tzinfo=dt.UTC))).total_seconds() * 1000 for a, b in rows)
def pct(p):
    return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else None
print(json.dumps({"groups": opened, "notified": len(lat), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat[-1] if lat else None}))
"""
    import json

    result = subprocess.run(
        [sys.executable, "-c", script, since], env=env, check=True, capture_output=True, text=True
    )
    data: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def drain(env: dict[str, str], limit_s: float = 300) -> float | None:
    """Wait until no job is due; the seconds waited (None when nothing was due)."""
    script = r"""
import sqlalchemy as sa
from lamplighter.core.settings import Settings
from lamplighter.core.db import Database
from lamplighter import domains
from lamplighter.core import jobs
settings = Settings(); domains.load(settings)
db = Database(settings.effective_database_url)
with db.sessionmaker() as s:
    print(jobs.queue_stats(session=s)[0])
"""
    started = time.monotonic()
    while True:
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
        )
        if int(result.stdout.strip().splitlines()[-1]) == 0:
            waited = time.monotonic() - started
            return waited if waited > 5 else None
        if time.monotonic() - started > limit_s:
            return time.monotonic() - started
        time.sleep(2)


def escalation_timing(env: dict[str, str], count: int) -> dict[str, Any]:
    """``count`` escalations in progress; how late each second-tier step runs."""
    script = r"""
import json, sys, time, datetime as dt
import sqlalchemy as sa
from lamplighter.core.settings import Settings
from lamplighter.core.db import Database, utcnow
from lamplighter.core import jobs, clock
from lamplighter import domains
from lamplighter.alerting import integrations, store
from lamplighter.alerting.intake import IncomingAlert
from lamplighter.alerting.models import Integration
from lamplighter.core.models import Job
count = int(sys.argv[1])
settings = Settings(job_batch_size=200); domains.load(settings)
db = Database(settings.effective_database_url)
with db.sessionmaker() as s:
    row = s.scalar(sa.select(Integration).where(Integration.name == "pagerduty-each"))
    snap = integrations.snapshot_of(row, None)
# Only this run's escalations are in progress: the steps the paced run left (due ten minutes
# after it) are put aside.
with db.transaction() as s:
    s.execute(sa.delete(Job).where(Job.kind == "oncall.escalation_step", Job.status == "queued"))
alerts = [IncomingAlert(action="trigger", dedup_key=f"esc-{time.time_ns()}-{i}", summary=f"escalation {i}", severity="critical", source="bench", received_format="pagerduty") for i in range(count)]
for start in range(0, count, 1000):
    store.write(db, [store.Submission(snap, alerts[start:start + 1000])])
worker = jobs.Worker(db, settings)
t0 = time.monotonic()
while worker.run_once():
    pass
started_s = time.monotonic() - t0
with db.sessionmaker() as s:
    steps = s.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == "oncall.escalation_step", Job.status == "queued"))
    first_due, last_due = s.execute(sa.select(sa.func.min(Job.due_at), sa.func.max(Job.due_at)).where(Job.kind == "oncall.escalation_step", Job.status == "queued")).one()
# Hold the clock at the first step's due time, then let it run at wall speed from there:
# the steps come due over the span their starts took, as they would a minute after.
offset = (first_due if first_due.tzinfo else first_due.replace(tzinfo=dt.UTC)) - utcnow()
class Shifted:
    def now(self):
        return dt.datetime.now(dt.UTC) + offset
clock._manual = Shifted()
t1 = time.monotonic()
while True:
    claimed = worker.run_once()
    with db.sessionmaker() as s:
        left = s.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == "oncall.escalation_step", Job.status == "queued"))
    if not left:
        break
    if not claimed:
        time.sleep(0.01)
with db.sessionmaker() as s:
    rows = s.execute(sa.select(Job.due_at, Job.finished_at).where(Job.kind == "oncall.escalation_step", Job.status == "done")).all()
late = sorted(max(0.0, ((f if f.tzinfo else f.replace(tzinfo=dt.UTC)) - (d if d.tzinfo else d.replace(tzinfo=dt.UTC))).total_seconds()) for d, f in rows)
print(json.dumps({"escalations": count, "start_all_s": round(started_s, 2), "steps": steps, "steps_done": len(late), "due_span_s": round(((last_due - first_due).total_seconds()), 2), "late_p50_ms": round(late[len(late)//2] * 1000, 1) if late else None, "late_p99_ms": round(late[int(len(late)*0.99)] * 1000, 1) if late else None, "late_max_ms": round(late[-1] * 1000, 1) if late else None}))
"""
    import json

    result = subprocess.run(
        [sys.executable, "-c", script, str(count)], env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="per wrk round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--escalations", type=int, default=10_000)
    parser.add_argument("--http-workers", type=int, default=1, help="API processes (uvicorn)")
    parser.add_argument(
        "--job-workers",
        type=int,
        default=None,
        help="worker processes; 0 = the API process's own worker (default on SQLite; 1 on PostgreSQL)",
    )
    parser.add_argument(
        "--notify-seconds", type=int, default=10, help="length of the paced 1,000/s run"
    )
    parser.add_argument("--pg-url", default=None, help="PostgreSQL database to use (it is wiped)")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=60.0,
        help="longest wait for a quiet machine before each round (0: no wait)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated: batch,single,notify,escalation,oncall"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    only = set(filter(None, args.only.split(",")))
    SETTLE_S[0] = args.settle_seconds

    def wanted(name: str) -> bool:
        return not only or name in only

    work = Path(tempfile.mkdtemp(prefix="lamplighter-ingest-bench-"))
    env = os.environ | {
        "LAMPLIGHTER_DATA_DIR": str(work),
        "LAMPLIGHTER_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "LAMPLIGHTER_LOG_LEVEL": "WARNING",
        "LAMPLIGHTER_ALERT_INGEST_RATE_PER_S": "1000000",
        "LAMPLIGHTER_ALERT_INGEST_BURST": "1000000",
        "LAMPLIGHTER_JOB_POLL_S": "0.05",
        "LAMPLIGHTER_JOB_BATCH_SIZE": "200",
        "LAMPLIGHTER_TEMPLATES_SYNC_ON_START": "false",
    }
    if args.pg_url:
        env["LAMPLIGHTER_DATABASE_URL"] = args.pg_url
    else:
        env.pop("LAMPLIGHTER_DATABASE_URL", None)
    backend = "PostgreSQL" if args.pg_url else "SQLite"
    if args.job_workers is None:
        args.job_workers = 1 if args.pg_url else 0
    print(f"machine: {machine()}")
    print(f"cpu check: {cpu_check():.2f} s for 10M additions")
    shape = (
        f"{args.job_workers} worker processes"
        if args.job_workers
        else "the worker in the serving process"
    )
    print(f"backend: {backend}; {args.http_workers} API processes, {shape}")
    if args.pg_url:
        wipe_postgres(args.pg_url)
    cli(env, "db", "upgrade")
    org = organisation(env)
    port = free_port()
    server = spawn_cli(
        env,
        "serve",
        "--port",
        str(port),
        *(["--no-worker"] if args.job_workers else []),
        "--workers",
        str(args.http_workers),
        log=work / "server.log",
    )
    workers = [
        spawn_cli(env, "worker", log=work / f"worker-{index}.log")
        for index in range(args.job_workers)
    ]
    lamplighter = f"http://127.0.0.1:{port}"
    peer, alertmanager = start_alertmanager(work)
    try:
        wait_http(lamplighter + "/healthz")
        scripts = work / "scripts"
        scripts.mkdir()
        (scripts / "am_batch.lua").write_text(AM_BATCH_LUA)
        (scripts / "am_peer_batch.lua").write_text(AM_PEER_BATCH_LUA)
        (scripts / "pd.lua").write_text(
            PD_LUA.replace("__KEY__", org["pagerduty"]).replace("__DELAY__", "")
        )
        (scripts / "am_peer_single.lua").write_text(AM_PEER_SINGLE_LUA)
        am_url = f"{lamplighter}/api/v1/alerting/ingest/alertmanager/{org['alertmanager']}"
        if wanted("batch"):
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(
                    run_wrk(
                        am_url,
                        scripts / "am_batch.lua",
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                )
                theirs.append(
                    run_wrk(
                        alertmanager + "/api/v2/alerts",
                        scripts / "am_peer_batch.lua",
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                )
            mine = statistics.median(r["requests_per_s"] for r in ours) * 100
            peer_rate = statistics.median(r["requests_per_s"] for r in theirs) * 100
            print(
                f"  Alertmanager webhook, batches of 100, c={args.connections}: "
                f"{mine:,.0f} alerts/s (p99 {statistics.median(r['p99_ms'] for r in ours)} ms, "
                f"non-2xx {sum(r['non_2xx'] for r in ours):.0f}); Alertmanager v2 API: {peer_rate:,.0f} alerts/s; "
                f"ratio {mine / peer_rate:.2f} (target >= 50,000 alerts/s)"
            )
        if wanted("single"):
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(
                    run_wrk(
                        lamplighter + "/v2/enqueue",
                        scripts / "pd.lua",
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                )
                theirs.append(
                    run_wrk(
                        alertmanager + "/api/v2/alerts",
                        scripts / "am_peer_single.lua",
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                )
            mine = statistics.median(r["requests_per_s"] for r in ours)
            peer_rate = statistics.median(r["requests_per_s"] for r in theirs)
            print(
                f"  PagerDuty events, one per request, c={args.connections}: {mine:,.0f} events/s, "
                f"p50 {statistics.median(r['p50_ms'] for r in ours)} ms, p99 {statistics.median(r['p99_ms'] for r in ours)} ms "
                f"(non-2xx {sum(r['non_2xx'] for r in ours):.0f}); Alertmanager v2 API, one alert: {peer_rate:,.0f}/s, "
                f"p99 {statistics.median(r['p99_ms'] for r in theirs)} ms; ratio {mine / peer_rate:.2f} "
                f"(target >= 3,000/s, p99 < 50 ms)"
            )
        if wanted("notify"):
            # A steady 1,000 alerts a second, every one its own group (so every one pages).
            time.sleep(3)  # let the worker finish what the earlier runs queued
            SETTLED.append(settle(SETTLE_S[0]))  # and Alertmanager what it took in its last round
            since_iso = dt.datetime.now(dt.UTC).isoformat()
            token = uuid.uuid4().hex[:12]
            key = org["pagerduty-each"]

            def event(index: int) -> bytes:
                return (
                    f'{{"routing_key":"{key}","event_action":"trigger","dedup_key":"{token}-{index}",'
                    f'"payload":{{"summary":"Disk {index} full","source":"db-1","severity":"critical"}}}}'
                ).encode()

            figures = paced_posts(
                lamplighter + "/v2/enqueue", event, rate=1000, seconds=args.notify_seconds
            )
            time.sleep(3)  # the last notifications
            latency = notification_latency(env, since_iso)
            print(
                f"  alert -> first notification at {figures['rate']:,.0f} alerts/s sent at a steady pace "
                f"(each its own group; intake p99 {figures['p99_ms']:.0f} ms, non-2xx {figures['non_2xx']:.0f}): "
                f"{latency['notified']}/{latency['groups']} groups notified, p50 {latency['p50_ms']:.0f} ms, "
                f"p99 {latency['p99_ms']:.0f} ms, max {latency['max_ms']:.0f} ms (target p99 < 500 ms)"
            )
        if wanted("oncall"):
            drained = drain(env)  # what the paced run queued would disturb these rounds
            if drained is not None:
                print(f"  (waited {drained:.0f} s for the worker to finish the queued jobs)")
            path = f"/api/v1/oncall/now?entity={org['entity']}"
            token = org["token"]
            (scripts / "get.lua").write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
            # Untimed, as for the intake: each API process's first requests open its pool's
            # connections and fill its caches (the first round measured cold: p99 40 - 50 ms).
            run_wrk(lamplighter + path, scripts / "get.lua", seconds=2, connections=8)
            for connections in (1, 4, 8):
                rounds = [
                    run_wrk(
                        lamplighter + path,
                        scripts / "get.lua",
                        seconds=args.seconds,
                        connections=connections,
                        threads=1,
                    )
                    for _ in range(args.rounds)
                ]
                print(
                    f"  who is on call now for an entity, c={connections}: "
                    f"{statistics.median(r['requests_per_s'] for r in rounds):,.0f}/s, "
                    f"p50 {statistics.median(r['p50_ms'] for r in rounds)} ms, "
                    f"p99 {statistics.median(r['p99_ms'] for r in rounds)} ms "
                    f"(rounds: {', '.join(str(r['p99_ms']) for r in rounds)}; target p99 < 20 ms)"
                )
    finally:
        for process in (server, *workers, peer):
            process.send_signal(signal.SIGTERM)
        for process in (server, *workers, peer):
            process.wait(timeout=60)
    if wanted("escalation"):
        timing = escalation_timing(env, args.escalations)
        print(
            f"  {timing['escalations']:,} escalations started in {timing['start_all_s']} s; "
            f"{timing['steps_done']:,} second-tier steps due over {timing['due_span_s']} s ran "
            f"late by p50 {timing['late_p50_ms']} ms, p99 {timing['late_p99_ms']} ms, "
            f"max {timing['late_max_ms']} ms (target: every step within 1 s)"
        )
    if SETTLED:
        print(
            f"  (before each round the machine was let settle: {sum(SETTLED):.0f} s in all, "
            f"at most {max(SETTLED):.0f} s)"
        )
    if not os.environ.get("LAMPLIGHTER_BENCH_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"  kept {work}")


def wipe_postgres(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


if __name__ == "__main__":
    main()
