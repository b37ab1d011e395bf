"""Benchmark: the request journal (issue 4).

Targets: toil analytics over 1,000,000 tickets in < 2 s, import of 100,000 tickets from CSV in
< 30 s (SQLite and PostgreSQL), and ``POST /api/v1/tickets`` p99 < 30 ms. The create is measured
under three loads: one client back to back (the latency of a create), people who think between
requests (--paced-users, --think-ms: a busy organisation, far above any real ticket rate), and
clients back to back (saturation: what queueing adds when the server has no idle moment).

    python bench/tickets.py [--tickets 1000000] [--import-rows 100000] [--seconds 15]
                            [--pg-url URL] [--skip-pg] [--only analytics,import,api]

PostgreSQL comes from --pg-url or LAMPLIGHTER_BENCH_DATABASE_URL (default: the lamplighter_bench
database); it is wiped. SQLite files go to a temporary directory.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _common import cli, free_port, machine, spawn_cli, wait_http

from lamplighter.core import migrate
from lamplighter.core.db import Database
from lamplighter.tickets.defaults import DEFAULT_TARGETS

DEFAULT_PG = os.environ.get(
    "LAMPLIGHTER_BENCH_DATABASE_URL",
    "postgresql+psycopg://lamplighter:lamplighter@127.0.0.1:5432/lamplighter_bench",
)
SRE_ZONES = [
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Australia/Sydney",
    "UTC",
]
# type slug -> (share of tickets, self-service share, automated share, typical minutes)
TYPE_MIX = {
    "new-repository": (0.14, 0.55, 0.05, 20),
    "ci-cd-pipeline": (0.09, 0.10, 0.05, 120),
    "database": (0.10, 0.30, 0.00, 90),
    "message-topic": (0.07, 0.20, 0.10, 45),
    "access-grant": (0.22, 0.10, 0.40, 15),
    "deployment-help": (0.12, 0.00, 0.00, 60),
    "dns-certificate": (0.08, 0.05, 0.30, 30),
    "capacity": (0.06, 0.00, 0.05, 60),
    "incident-follow-up": (0.05, 0.00, 0.00, 180),
    "other": (0.07, 0.00, 0.00, 30),
}
EFFORTS = [5, 10, 15, 20, 25, 30, 45, 60, 90, 120, 150, 180, 240, 300, 480]
TICKET_COLUMNS = [
    "id",
    "type_id",
    "title",
    "description",
    "requesting_team_id",
    "assignee_user_id",
    "assignee_team_id",
    "priority",
    "status",
    "labels",
    "resolution",
    "effort_minutes",
    "created_at",
    "updated_at",
    "first_response_at",
    "done_at",
    "first_response_due_at",
    "done_due_at",
    "time_to_done_s",
]
WORK_LOG_COLUMNS = ["ticket_id", "user_id", "minutes", "logged_at", "note", "created_at"]


def reset(url: str) -> None:
    if url.startswith("postgresql"):
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        path = Path(sa.engine.make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    migrate.upgrade(url)


def _people(db: Database, teams: int, sres: int) -> tuple[list[int], list[int]]:
    """Insert SREs and team leads directly; return (sre ids, team ids)."""
    now = dt.datetime.now(dt.UTC)
    users = [
        {
            "email": f"sre{i}@example.com",
            "display_name": f"SRE {i}",
            "time_zone": SRE_ZONES[i % len(SRE_ZONES)],
            "role": "sre",
            "is_active": True,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(sres)
    ] + [
        {
            "email": f"lead{i}@example.com",
            "display_name": f"Lead {i}",
            "time_zone": "UTC",
            "role": "member",
            "is_active": True,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(teams)
    ]
    from lamplighter.core.models import Team, User

    with db.transaction() as session:
        session.execute(sa.insert(User), users)
        ids = dict(session.execute(sa.select(User.email, User.id)).tuples().all())
        session.execute(
            sa.insert(Team),
            [
                {
                    "slug": f"team-{i}",
                    "name": f"Team {i}",
                    "description": "",
                    "lead_user_id": ids[f"lead{i}@example.com"],
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(teams)
            ],
        )
        team_ids = list(session.scalars(sa.select(Team.id).order_by(Team.id)))
    return [ids[f"sre{i}@example.com"] for i in range(sres)], team_ids


def _work_time(rng: random.Random, start: dt.datetime, seconds: int, zone: str) -> dt.datetime:
    """When work was logged: mostly in the person's working hours, sometimes not."""
    moment = start + dt.timedelta(seconds=rng.randrange(max(seconds, 1)))
    if rng.random() < 0.15:
        return moment
    local = moment.astimezone(zoneinfo.ZoneInfo(zone))
    while local.weekday() >= 5:
        local += dt.timedelta(days=1)
    local = local.replace(hour=rng.randrange(9, 18), minute=rng.randrange(60))
    return local.astimezone(dt.UTC)


def synthetic_rows(
    count: int, type_ids: dict[str, int], sre_ids: list[int], team_ids: list[int], seed: int = 7
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...] | None]]:
    """(ticket row, work log row or None) spread over the last year, skewed like real demand."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=365)
    slugs = list(TYPE_MIX)
    weights = [TYPE_MIX[s][0] for s in slugs]
    team_weights = [1 / (i + 1) ** 0.8 for i in range(len(team_ids))]
    sre_teams = team_ids[:5]
    for ticket_id in range(1, count + 1):
        slug = rng.choices(slugs, weights)[0]
        _, self_share, auto_share, minutes = TYPE_MIX[slug]
        created = start + dt.timedelta(seconds=rng.randrange(365 * 86400))
        priority = rng.choices(("P1", "P2", "P3", "P4"), (2, 13, 60, 25))[0]
        targets = DEFAULT_TARGETS[priority]
        first_due = created + dt.timedelta(minutes=targets["first_response_minutes"])
        done_due = created + dt.timedelta(minutes=targets["done_minutes"])
        roll = rng.random()
        resolution = None
        sre = rng.randrange(len(sre_ids))
        assignee: int | None = sre_ids[sre]
        work_log = None
        if roll < self_share + auto_share and (now - created).days > 0:
            status = "done"
            resolution = "self-service" if roll < self_share else "automated"
            effort = minutes
            ttd: int | None = rng.randrange(5, 300)
            assignee = None
        else:
            age_days = (now - created).days
            status = rng.choices(
                ("done", "rejected", "new", "in_progress", "waiting"),
                (88, 4, 2, 4, 2) if age_days > 14 else (40, 2, 30, 20, 8),
            )[0]
            effort = min(EFFORTS, key=lambda e: abs(e - rng.lognormvariate(0, 0.6) * minutes))
            ttd = int(rng.lognormvariate(11.0, 1.1)) + 60 if status == "done" else None
            if ttd is not None and created + dt.timedelta(seconds=ttd) > now:
                status, ttd = "in_progress", None  # not done yet
            if status == "done":
                resolution = "manual"
                assert ttd is not None
                logged = _work_time(rng, created, ttd, SRE_ZONES[sre % len(SRE_ZONES)])
                logged = min(logged, now)
                work_log = (ticket_id, assignee, effort, logged, "", logged)
            elif status == "new":
                effort, assignee = 0, None
        done_at = created + dt.timedelta(seconds=ttd) if ttd is not None else None
        responded = created + dt.timedelta(seconds=min(ttd or 3600, 3600)) if assignee else done_at
        responded = min(responded, now) if responded else None
        yield (
            (
                ticket_id,
                type_ids[slug],
                f"{slug} request {ticket_id}",
                "",
                rng.choices(team_ids, team_weights)[0],
                assignee,
                rng.choice(sre_teams),
                priority,
                status,
                "[]",
                resolution,
                effort,
                created,
                done_at or created,
                responded,
                done_at,
                first_due,
                done_due,
                ttd,
            ),
            work_log,
        )


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def generate(db: Database, count: int, *, teams: int = 200, sres: int = 40) -> dict[str, float]:
    """Fill an empty, migrated database with ``count`` tickets and their work logs."""
    started = time.perf_counter()
    sre_ids, team_ids = _people(db, teams, sres)
    with db.sessionmaker() as session:
        type_ids = dict(
            session.execute(sa.text("SELECT slug, id FROM ticket_types")).tuples().all()
        )
    rows = synthetic_rows(count, type_ids, sre_ids, team_ids)
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.is_sqlite:
            ticket_sql = f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) VALUES ({', '.join('?' * len(TICKET_COLUMNS))})"
            log_sql = f"INSERT INTO ticket_work_logs ({', '.join(WORK_LOG_COLUMNS)}) VALUES ({', '.join('?' * len(WORK_LOG_COLUMNS))})"
            batch: list[tuple[Any, ...]] = []
            logs: list[tuple[Any, ...]] = []
            for ticket, log in rows:
                batch.append(tuple(_sqlite_value(v) for v in ticket))
                if log:
                    logs.append(tuple(_sqlite_value(v) for v in log))
                if len(batch) >= 50_000:
                    cursor.executemany(ticket_sql, batch)
                    cursor.executemany(log_sql, logs)
                    batch, logs = [], []
            cursor.executemany(ticket_sql, batch)
            cursor.executemany(log_sql, logs)
        else:
            logs = []
            with cursor.copy(f"COPY tickets ({', '.join(TICKET_COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for ticket, log in rows:
                    copy.write_row(ticket)
                    if log:
                        logs.append(log)
            with cursor.copy(  # type: ignore[attr-defined]
                f"COPY ticket_work_logs ({', '.join(WORK_LOG_COLUMNS)}) FROM STDIN"
            ) as copy:
                for log in logs:
                    copy.write_row(log)
            cursor.execute("SELECT setval('tickets_id_seq', (SELECT max(id) FROM tickets))")
        raw.commit()
    finally:
        raw.close()
    with db.engine.begin() as connection:
        if db.is_sqlite:
            connection.execute(sa.text("ANALYZE"))
    if not db.is_sqlite:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))
    return {"generate_s": round(time.perf_counter() - started, 1)}


# Indexes the analytics queries read from (proposed migration; see docs/benchmarks.md). Each
# GROUP BY follows an index prefix, so SQLite streams it instead of sorting a million tickets.
SUGGESTED_INDEXES = {
    "ix_tickets_type_outcome": (
        "tickets",
        "type_id, status, resolution, effort_minutes, created_at, assignee_team_id, time_to_done_s",
    ),
    "ix_tickets_type_done_time": (
        "tickets",
        "type_id, status, time_to_done_s, created_at, assignee_team_id",
    ),
    "ix_tickets_type_created": ("tickets", "type_id, created_at, assignee_team_id"),
    "ix_tickets_requesting_team": (
        "tickets",
        "requesting_team_id, created_at, assignee_team_id, effort_minutes",
    ),
    "ix_tickets_assignee_status": (
        "tickets",
        "assignee_user_id, status, created_at, assignee_team_id",
    ),
    "ix_ticket_work_logs_user": ("ticket_work_logs", "user_id, logged_at, minutes"),
}


def apply_suggested_indexes(db: Database) -> float:
    started = time.perf_counter()
    with db.engine.begin() as connection:
        for name, (table, columns) in SUGGESTED_INDEXES.items():
            connection.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
            connection.execute(sa.text(f"CREATE INDEX {name} ON {table} ({columns})"))
    _analyze(db)
    return round(time.perf_counter() - started, 1)


def _analyze(db: Database) -> None:
    if db.is_sqlite:
        with db.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE"))
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))


def time_analytics(db: Database, *, runs: int = 5) -> dict[str, float]:
    """Cold (first) and median warm time of the full report, over the whole year and 90 days."""
    from lamplighter.tickets import analytics

    today = dt.datetime.now(dt.UTC).date()
    cases = {
        "year": {"since": today - dt.timedelta(days=365), "until": today},
        "90_days": {},
        "year_one_team": {
            "since": today - dt.timedelta(days=365),
            "until": today,
            "team": "team-0",
        },
    }
    figures: dict[str, float] = {}
    for name, options in cases.items():
        times = []
        for _ in range(runs + 1):
            with db.sessionmaker() as session:
                started = time.perf_counter()
                report = analytics.toil_report(session=session, **options)  # type: ignore[arg-type]
                times.append(time.perf_counter() - started)
        figures[f"{name}_tickets"] = report.totals.count
        figures[f"{name}_cold_s"] = round(times[0], 3)
        figures[f"{name}_median_s"] = round(sorted(times[1:])[len(times[1:]) // 2], 3)
    return figures


# -- import ----------------------------------------------------------------------------------
def import_csv(path: Path, count: int, sres: int = 40, teams: int = 200) -> None:
    """A plain-CSV export of ``count`` tickets that reference existing people and teams."""
    rng = random.Random(11)
    type_ids = {slug: index for index, slug in enumerate(TYPE_MIX)}
    slugs = {index: slug for slug, index in type_ids.items()}
    fake_sres = list(range(sres))
    fake_teams = list(range(teams))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(imports_columns())
        for (ticket, _), n in zip(
            synthetic_rows(count, type_ids, fake_sres, fake_teams, seed=3),
            range(count),
            strict=False,
        ):
            (_, type_id, title, _, team, assignee, assigned_team, priority, status, _, resolution,
             effort, created, _, responded, done, _, _, _) = ticket  # fmt: skip
            writer.writerow(
                [
                    f"HIST-{n}",
                    slugs[type_id],
                    title,
                    "Imported from the old tracker",
                    priority,
                    status,
                    f"lead{rng.randrange(teams)}@example.com",
                    f"team-{team}",
                    f"sre{assignee}@example.com" if assignee is not None else "",
                    f"team-{assigned_team}",
                    rng.choice(("", "prod", "prod;urgent", "staging")),
                    created.isoformat(),
                    responded.isoformat() if responded and status != "new" else "",
                    done.isoformat() if done and status == "done" else "",
                    resolution if status == "done" else "",
                    effort,
                ]
            )


def imports_columns() -> tuple[str, ...]:
    from lamplighter.tickets import import_formats

    return import_formats.PLAIN_COLUMNS


def time_import(db: Database, path: Path) -> dict[str, float]:
    from lamplighter.core.context import Actor
    from lamplighter.tickets import imports

    _people(db, 200, 40)
    data = path.read_bytes()
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def progress(phase: str, done: int, total: int) -> None:
        if done == total and phase not in phases:
            phases[phase] = round(time.perf_counter() - started, 2)

    with db.transaction() as session:
        report = imports.import_tickets(
            session=session,
            actor=Actor.system("bench"),
            data=data,
            fmt="csv",
            progress=progress,
        )
    total = time.perf_counter() - started
    return {
        "rows": report.rows,
        "created": report.created,
        "checked_after_s": phases.get("checking", 0.0),
        "tickets_and_history_after_s": phases.get("writing", 0.0),
        "audit_entries_after_s": phases.get("auditing", 0.0),
        "total_s_with_commit": round(total, 2),
    }


# -- POST /api/v1/tickets --------------------------------------------------------------------
POST_LUA = """
wrk.method = "POST"
wrk.body = '{"type": "database", "title": "A database for the benchmark", "priority": "P2"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
"""


PACE_LUA = """
-- people filling in a form: each thinks between requests for a random time (exponential, mean
-- PACE_MS ms), so the offered load stays below saturation and the clients do not march in step
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
function delay() return math.floor(-PACE_MS * math.log(1 - math.random())) end
"""


def time_api(
    url: str | None, seconds: int, loads: list[tuple[int, int]], workers: int
) -> list[dict[str, float]]:
    """wrk against one ``serve --no-worker``; each load is (connections, think time in ms)."""
    from http_get import parse_wrk

    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    data_dir = Path(tempfile.mkdtemp(prefix="lamplighter-bench-"))
    env = os.environ | {
        "LAMPLIGHTER_DATA_DIR": str(data_dir),
        "LAMPLIGHTER_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "LAMPLIGHTER_LOG_LEVEL": "WARNING",
    }
    env.pop("LAMPLIGHTER_DATABASE_URL", None)
    if url:
        reset(url)
        env["LAMPLIGHTER_DATABASE_URL"] = url
    cli(env, "db", "upgrade")
    cli(env, "demo", "load")
    token = json.loads(
        cli(env, "token", "create", "--user", "priya@example.com", "--name", "bench", "-o", "json")
    )["token"]
    port = free_port()
    server = spawn_cli(
        env,
        "serve",
        "--no-worker",
        "--port",
        str(port),
        "--workers",
        str(workers),
        log=data_dir / "server.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        target = f"http://127.0.0.1:{port}/api/v1/tickets"
        warm = data_dir / "warm.lua"
        warm.write_text(POST_LUA.replace("TOKEN", token))
        subprocess.run(
            ["wrk", "-t1", "-c2", "-d3s", "-s", str(warm), target], check=True, capture_output=True
        )
        results = []
        for connections, pace_ms in loads:
            script = data_dir / f"post-{connections}-{pace_ms}.lua"
            body = POST_LUA.replace("TOKEN", token)
            if pace_ms:
                body += PACE_LUA.replace("PACE_MS", str(pace_ms))
            script.write_text(body)
            result = subprocess.run(
                [
                    "wrk",
                    f"-t{min(2, connections)}",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--latency",
                    "-s",
                    str(script),
                    target,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(parse_wrk(result.stdout))
        return results
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(data_dir, ignore_errors=True)


# -- main ------------------------------------------------------------------------------------
def _show_analytics(label: str, figures: dict[str, float]) -> None:
    print(f"toil analytics, {label}:")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    worst = max(v for k, v in figures.items() if k.endswith("_median_s"))
    print(
        f"  target < 2 s: {'met' if worst < 2 else 'NOT met'} (worst median {worst} s)", flush=True
    )


def run_backend(name: str, url: str, args: argparse.Namespace, work_dir: Path) -> None:
    only = set(args.only.split(","))
    print(f"\n== {name} ==", flush=True)
    if "analytics" in only:
        reset(url)
        db = Database(url)
        print(f"generating {args.tickets:,} tickets ...", flush=True)
        print("  ", generate(db, args.tickets), flush=True)
        if args.compare_schema:
            _show_analytics("the schema as migrated today", time_analytics(db, runs=2))
        if not args.no_suggested_indexes:
            print("  suggested indexes built in", apply_suggested_indexes(db), "s", flush=True)
            _show_analytics("with the suggested indexes", time_analytics(db))
        db.dispose()
    if "import" in only:
        reset(url)
        db = Database(url)
        if not args.no_suggested_indexes:
            apply_suggested_indexes(db)
        path = work_dir / "history.csv"
        import_csv(path, args.import_rows)
        figures = time_import(db, path)
        print(f"CSV import of {args.import_rows:,} tickets (per-ticket audit entries included):")
        for key, value in figures.items():
            print(f"  {key}: {value}")
        print(f"  target < 30 s: {'met' if figures['total_s_with_commit'] < 30 else 'NOT met'}")
        db.dispose()
    if "api" in only:
        loads = [(1, 0), (args.paced_users, args.think_ms), (args.connections, 0)]
        names = [
            "one client, back to back",
            f"{args.paced_users} people, each thinking {args.think_ms} ms on average between requests",
            f"{args.connections} clients back to back (saturation)",
        ]
        results = time_api(None if name == "SQLite" else url, args.seconds, loads, args.workers)
        for (connections, _pace), label, figures in zip(loads, names, results, strict=True):
            print(
                f"POST /api/v1/tickets, {label}: wrk -c{connections} -d{args.seconds}s, "
                f"{args.workers} server process(es):"
            )
            for key, value in figures.items():
                print(f"  {key}: {value}")
            print(
                f"  target p99 < 30 ms: {'met' if figures.get('p99_ms', 1e9) < 30 else 'NOT met'}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=4, help="clients at saturation")
    parser.add_argument("--paced-users", type=int, default=8, help="clients with think time")
    parser.add_argument("--think-ms", type=int, default=100, help="think time between requests")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL database (wiped)")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--only", default="analytics,import,api")
    parser.add_argument(
        "--compare-schema",
        action="store_true",
        help="also time the analytics on today's schema, before building the proposed indexes",
    )
    parser.add_argument(
        "--no-suggested-indexes",
        action="store_true",
        help="measure the schema as migrated today, without the proposed analytics indexes",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    work_dir = Path(tempfile.mkdtemp(prefix="lamplighter-bench-tickets-"))
    try:
        if not args.skip_sqlite:
            run_backend("SQLite", f"sqlite:///{work_dir / 'bench.db'}", args, work_dir)
        if not args.skip_pg:
            run_backend("PostgreSQL", args.pg_url, args, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
