"""Benchmark: SLOs (issue 13).

Targets, SQLite and PostgreSQL:
- evaluate 1,000 SLOs over 30 days of per-minute built-in data in < 2 s;
- ingest built-in events at >= 20,000 counter points/s in batches;
- export the Prometheus rules of 1,000 SLOs in < 1 s; apply 1,000 Sloth specs in < 10 s;
- GET of one SLO's status: p99 < 20 ms at the catalog GET's connection counts (4, 8 and 16).

    python bench/slo.py [--backend sqlite|postgresql|both] [--smoke] [--slos 1000] [--days 30]
                        [--pg-url URL] [--seconds 5] [--rounds 3] [--connections 4,8,16]

Each backend starts from an empty database (the PostgreSQL one is wiped): a team owning
``--slos`` catalog services, one built-in events SLO on each, and ``--days`` of minute buckets
for every SLO plus their hour and day buckets, written by one INSERT ... SELECT per chunk of
SLOs (a recursive CTE on SQLite, generate_series on PostgreSQL; 43 M rows through Python would
take longer than the rest of the run). Each figure has a floor measured in the same run,
alternating with it, and the ratio ours / floor is printed:
- evaluation: the same sums (window and the seven burn lookbacks over the same day, hour and
  minute pieces) as raw SQL on the driver's cursor;
- ingest: the same buckets written by a bare executemany of the already-bucketed rows;
- status GET: a bare FastAPI app answering static JSON of the same size (wrk, alternating).
The rules export and the Sloth apply have no floor: they are pure Python over 1,000 SLOs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SECRET = "bench-secret-key-0123456789abcdef-slo"
os.environ.setdefault("LAMPLIGHTER_SECRET_KEY", SECRET)

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from _common import cpu_check, free_port, machine, spawn_cli, wait_http  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://lamplighter:lamplighter@127.0.0.1:5432/lamplighter_test_perf"
CHUNK_SLOS = 25  # SLOs per INSERT ... SELECT of minute rows (1.08 M rows at 30 days)


def reset(url: str) -> None:
    from lamplighter.core import migrate

    if url.startswith("postgresql"):
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    migrate.upgrade(url)


def median_of(runs: int, work: Callable[[], float]) -> tuple[float, list[float]]:
    times = [work() for _ in range(runs)]
    return statistics.median(times), times


# -- the data ------------------------------------------------------------------------------------


def organisation(db: Any, services: int) -> tuple[int, str]:
    """A team and its lead, ``services`` catalog services it owns; the lead's user id, email."""
    from lamplighter.catalog import service as catalog
    from lamplighter.core import identity
    from lamplighter.core.context import Actor

    system = Actor.system("bench")
    email = "lead@example.com"
    with db.transaction() as session:
        identity.create_user(
            session=session, actor=system, email=email, display_name="Lead", role="member"
        )
        identity.create_team(
            session=session, actor=system, slug="shop", name="Shop", lead_email=email
        )
        for index in range(services):
            catalog.create(
                session=session,
                actor=system,
                data=catalog.EntityInput(kind="service", name=f"svc-{index:04d}", owner="shop"),
            )
        user = identity.get_user_by_email(session=session, email=email)
        assert user is not None
        return user.id, email


def define_slos(db: Any, count: int, name: str = "availability") -> list[tuple[int, str]]:
    """One built-in events SLO per service; (id, ingest key)."""
    from lamplighter.core.context import Actor
    from lamplighter.slo import service
    from lamplighter.slo.schemas import SloIn

    system = Actor.system("bench")
    found = []
    with db.transaction() as session:
        for index in range(count):
            slo, key = service.create(
                session=session,
                actor=system,
                data=SloIn(entity=f"svc-{index:04d}", name=name, objective=99.9, source="events"),
            )
            assert key is not None
            found.append((slo.id, key))
    return found


def populate(db: Any, slo_ids: list[int], end: dt.datetime, days: int) -> dict[str, int]:
    """Minute, hour and day buckets for ``days`` before ``end`` (a whole minute): 1,000 events
    a minute, one bad every other minute (30 an hour, 720 a day, so the resolutions agree)."""
    start = end - dt.timedelta(days=days)
    minutes, hours = days * 1440, days * 24
    start_epoch = int(start.timestamp())
    postgres = db.engine.dialect.name == "postgresql"
    if postgres:
        statement = sa.text(
            "INSERT INTO slo_counts (slo_id, resolution, at, good, total) "
            "SELECT s.id, :res, to_timestamp(:start + i * :res), "
            ":total - :bad_every - :bad_odd * ((i + s.id) % 2), :total "
            "FROM slos s CROSS JOIN generate_series(0, :count - 1) AS i "
            "WHERE s.id >= :lo AND s.id <= :hi ORDER BY s.id, i"
        )
    else:
        statement = sa.text(
            "WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m WHERE i < :count - 1) "
            "INSERT INTO slo_counts (slo_id, resolution, at, good, total) "
            "SELECT s.id, :res, strftime('%Y-%m-%d %H:%M:%S.000000', :start + i * :res, "
            "'unixepoch'), :total - :bad_every - :bad_odd * ((i + s.id) % 2), :total "
            "FROM slos s CROSS JOIN m WHERE s.id >= :lo AND s.id <= :hi ORDER BY s.id, i"
        )
    ids = sorted(slo_ids)
    written = 0
    started = time.perf_counter()
    for offset in range(0, len(ids), CHUNK_SLOS):
        chunk = ids[offset : offset + CHUNK_SLOS]
        with db.engine.begin() as connection:
            if postgres:
                connection.execute(sa.text("SET LOCAL synchronous_commit = off"))
            for res, count, total, bad_every, bad_odd in (
                (60, minutes, 1000, 0, 1),
                (3600, hours, 60_000, 30, 0),
                (86400, days, 1_440_000, 720, 0),
            ):
                params = {
                    "res": res,
                    "start": start_epoch,
                    "count": count,
                    "total": total,
                    "bad_every": bad_every,
                    "bad_odd": bad_odd,
                    "lo": chunk[0],
                    "hi": chunk[-1],
                }
                connection.execute(statement, params)
                written += len(chunk) * count
        done = offset + len(chunk)
        if done % 250 == 0 or done == len(ids):
            rate = written / (time.perf_counter() - started)
            print(f"    {done}/{len(ids)} SLOs populated, {written:,} rows ({rate:,.0f}/s)")
    if postgres:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE slo_counts"))
    else:
        with db.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE"))
    return {"rows": written, "seconds": round(time.perf_counter() - started)}


# -- evaluation ------------------------------------------------------------------------------------


def floor_sums(db: Any, slo_ids: list[int], now: dt.datetime) -> float:
    """The raw SQL the evaluation cannot do without: SUM(good), SUM(total) per SLO over the
    30-day window and the seven burn lookbacks, over the same pieces, on the driver's cursor."""
    from lamplighter.slo import evaluate
    from lamplighter.slo.service import BURN_WINDOWS

    postgres = db.engine.dialect.name == "postgresql"
    ph = "%s" if postgres else "?"

    def stamp(at: dt.datetime) -> Any:
        return at if postgres else at.strftime("%Y-%m-%d %H:%M:%S.000000")

    ranges = [(now - dt.timedelta(days=30), now)] + [(now - w, now) for w in BURN_WINDOWS]
    started = time.perf_counter()
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for start, end in ranges:
            parts = evaluate.pieces(start, end)
            where = " OR ".join(f"(resolution = {ph} AND at >= {ph} AND at < {ph})" for _ in parts)
            params: list[Any] = [v for res, a, b in parts for v in (res, stamp(a), stamp(b))]
            for offset in range(0, len(slo_ids), evaluate.ID_CHUNK):
                chunk = slo_ids[offset : offset + evaluate.ID_CHUNK]
                marks = ",".join([ph] * len(chunk))
                cursor.execute(
                    f"SELECT slo_id, SUM(good), SUM(total) FROM slo_counts "
                    f"WHERE slo_id IN ({marks}) AND ({where}) GROUP BY slo_id",
                    [*chunk, *params],
                )
                cursor.fetchall()
        raw.rollback()
    finally:
        raw.close()
    return time.perf_counter() - started


def bench_evaluate(db: Any, slo_ids: list[int], now: dt.datetime, rounds: int) -> dict[str, Any]:
    from lamplighter.slo import evaluate
    from lamplighter.slo.models import Slo

    def ours() -> float:
        with db.sessionmaker() as session:
            slos = list(session.scalars(sa.select(Slo).where(Slo.id.in_(slo_ids))))
            started = time.perf_counter()
            evaluate.evaluate(session=session, slos=slos, now=now, prometheus=None)
            elapsed = time.perf_counter() - started
            statuses = {slo.status for slo in slos}
            session.rollback()  # state transitions must not accumulate between runs
        assert statuses <= {"healthy", "warning"}, statuses
        return elapsed

    def floor() -> float:
        return floor_sums(db, slo_ids, now)

    ours()  # warm-up: statement caches, the page cache
    floor()
    mine: list[float] = []
    floors: list[float] = []
    for number in range(rounds):
        # Alternate which goes first: a shared machine's speed drifts within minutes.
        if number % 2:
            floors.append(floor())
            mine.append(ours())
        else:
            mine.append(ours())
            floors.append(floor())
    result: dict[str, Any] = {
        "evaluate_s": statistics.median(mine),
        "evaluate_runs": mine,
        "floor_sums_s": statistics.median(floors),
    }
    return result


def profile_evaluate(db: Any, slo_ids: list[int], now: dt.datetime) -> str:
    import cProfile
    import io
    import pstats

    from lamplighter.slo import evaluate
    from lamplighter.slo.models import Slo

    with db.sessionmaker() as session:
        slos = list(session.scalars(sa.select(Slo).where(Slo.id.in_(slo_ids))))
        profiler = cProfile.Profile()
        profiler.enable()
        evaluate.evaluate(session=session, slos=slos, now=now, prometheus=None)
        profiler.disable()
        session.rollback()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(18)
    return out.getvalue()


# -- ingest ----------------------------------------------------------------------------------------


def ingest_points(end: dt.datetime, count: int, offset: int) -> list[tuple[dt.datetime, int, int]]:
    """``count`` points, one a minute, going back from ``end`` after skipping ``offset``."""
    return [(end - dt.timedelta(minutes=offset + m), 995 + m % 5, 1000) for m in range(count)]


def bench_ingest_service(
    db: Any, slo_id: int, now: dt.datetime, batches: int, batch: int
) -> dict[str, Any]:
    """record_counts in batches, committed each, alternating with a bare executemany floor."""
    from lamplighter.slo import service
    from lamplighter.slo.models import SloCount

    ours_s = floor_s = 0.0
    points_done = 0
    for number in range(batches):
        points = ingest_points(now, batch, number * batch)
        started = time.perf_counter()
        with db.transaction() as session:
            service.record_counts(session=session, slo_id=slo_id, points=points, now=now)
        ours_s += time.perf_counter() - started
        points_done += len(points)
        # floor: the minute, hour and day rows as plain inserts of precomputed tuples into a
        # second SLO's id range (no bucketing, no validation, no upsert)
        rows: dict[tuple[int, int], tuple[int, int]] = {}
        for at, good, total in points:
            for res in (60, 3600, 86400):
                epoch = int(at.timestamp())
                key = (res, epoch - epoch % res)
                g, t = rows.get(key, (0, 0))
                rows[key] = (g + good, t + total)
        floor_rows = [
            {
                "slo_id": slo_id + 1,
                "resolution": res,
                "at": dt.datetime.fromtimestamp(epoch, dt.UTC),
                "good": g,
                "total": t,
            }
            for (res, epoch), (g, t) in rows.items()
        ]
        started = time.perf_counter()
        with db.engine.begin() as connection:
            connection.execute(sa.delete(SloCount).where(SloCount.slo_id == slo_id + 1))
            connection.execute(sa.insert(SloCount), floor_rows)
        floor_s += time.perf_counter() - started
    return {
        "service_points_per_s": points_done / ours_s,
        "floor_points_per_s": points_done / floor_s,
        "points": points_done,
    }


def bench_ingest_api(
    base: str, slo_id: int, key: str, now: dt.datetime, batches: int, batch: int
) -> dict[str, float] | str:
    with httpx.Client(base_url=base, timeout=120) as client:
        probe = client.post(
            f"/api/v1/slos/{slo_id}/events",
            json={"points": [{"at": now.isoformat(), "good": 1, "total": 1}]},
            headers={"X-Lamplighter-Ingest-Key": key},
        )
        if probe.status_code == 404:
            return "not built yet"
        probe.raise_for_status()
        elapsed = 0.0
        for number in range(batches):
            body = {
                "points": [
                    {"at": at.isoformat(), "good": g, "total": t}
                    for at, g, t in ingest_points(now, batch, number * batch)
                ]
            }
            payload = json.dumps(body)
            started = time.perf_counter()
            answer = client.post(
                f"/api/v1/slos/{slo_id}/events",
                content=payload,
                headers={"X-Lamplighter-Ingest-Key": key, "Content-Type": "application/json"},
            )
            elapsed += time.perf_counter() - started
            answer.raise_for_status()
    return {"api_points_per_s": batches * batch / elapsed}


# -- rules and apply -------------------------------------------------------------------------------

SLOTH_SPEC = """version: "prometheus/v1"
service: "{service}"
labels:
  owner: "shop"
slos:
  - name: "requests-availability"
    objective: 99.9
    description: "Requests answered without a 5xx."
    sli:
      events:
        error_query: sum(rate(http_requests_total{{job="{service}",code=~"5.."}}[{{{{.window}}}}]))
        total_query: sum(rate(http_requests_total{{job="{service}"}}[{{{{.window}}}}]))
    alerting:
      name: {alert}HighErrorRate
      page_alert:
        labels:
          severity: page
      ticket_alert:
        labels:
          severity: ticket
"""


def bench_apply_and_rules(db: Any, work: Path, count: int, rounds: int) -> dict[str, Any]:
    try:
        from lamplighter.slo import apply as slo_apply
    except ImportError:
        slo_apply = None  # type: ignore[assignment]
    try:
        from lamplighter.slo import rules
    except ImportError:
        rules = None  # type: ignore[assignment]
    from lamplighter.core.context import Actor

    figures: dict[str, Any] = {}
    if slo_apply is None:
        figures["apply"] = "not built yet"
    else:
        folder = work / "sloth"
        folder.mkdir(exist_ok=True)
        for index in range(count):
            service_name = f"svc-{index:04d}"
            (folder / f"{service_name}.yml").write_text(
                SLOTH_SPEC.format(service=service_name, alert=f"Svc{index}")
            )
        actor = Actor.system("bench")

        def apply_all() -> tuple[float, Any]:
            started = time.perf_counter()
            files = [(str(path), path.read_text()) for path in sorted(folder.glob("*.yml"))]
            with db.transaction() as session:
                report = slo_apply.apply(session=session, actor=actor, files=files)
            return time.perf_counter() - started, report

        first_s, report = apply_all()
        if report.refused_files:
            problems = [r.problems for r in report.files if r.problems][:2]
            raise SystemExit(f"Sloth apply refused files: {problems}")
        again_s, again = apply_all()
        figures |= {
            "apply_s": first_s,
            "apply_created": report.created,
            "reapply_unchanged_s": again_s,
            "reapply_unchanged": again.unchanged,
        }
    if rules is None:
        figures["rules"] = "not built yet"
    elif slo_apply is None:
        figures["rules"] = "no Prometheus SLOs to export (apply not built yet)"
    else:

        def render() -> float:
            with db.sessionmaker() as session:
                started = time.perf_counter()
                text = rules.render(session)
                elapsed = time.perf_counter() - started
            figures["rules_bytes"] = len(text)
            figures["rules_count"] = text.count("\n  - record:") + text.count("\n  - alert:")
            return elapsed

        render()
        figures["rules_s"], figures["rules_runs"] = median_of(rounds, render)
    return figures


# -- the status GET --------------------------------------------------------------------------------


def floor_server(port: int, body_file: str) -> None:
    """A bare FastAPI app answering the same bytes as the status GET (no auth, no database)."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    body = Path(body_file).read_bytes()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/api/v1/slos/{slo_id}/status")
    async def status(slo_id: int) -> Response:
        return Response(body, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_config=None)


def bench_status_get(
    base: str,
    token: str,
    slo_id: int,
    work: Path,
    *,
    seconds: int,
    rounds: int,
    connections: int,
) -> dict[str, Any] | str:
    from http_get import wrk

    path = f"/api/v1/slos/{slo_id}/status"
    auth = {"Authorization": f"Bearer {token}"}
    answer = httpx.get(base + path, headers=auth)
    if answer.status_code == 404 and "/status" not in answer.text:
        return "not built yet"
    answer.raise_for_status()
    body_file = work / "status.json"
    body_file.write_bytes(answer.content)
    floor_port = free_port()
    log = (work / "floor.log").open("wb")
    floor = subprocess.Popen(
        [sys.executable, __file__, "--floor-server", str(floor_port), str(body_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    servers = {"lamplighter": base, "floor": f"http://127.0.0.1:{floor_port}"}
    header = f"Authorization: Bearer {token}"
    try:
        wait_http(servers["floor"] + "/healthz")
        for url in servers.values():
            subprocess.run(
                ["wrk", "-t1", "-c4", "-d2s", "-H", header, url + path],
                check=True,
                capture_output=True,
            )
        measured: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for number in range(rounds):
            order = list(servers) if number % 2 == 0 else list(reversed(servers))
            for name in order:
                measured[name].append(
                    wrk(servers[name] + path, header, seconds=seconds, connections=connections)
                )
    finally:
        floor.terminate()
        floor.wait(timeout=20)
    figures: dict[str, Any] = {"body_bytes": len(answer.content)}
    for name, runs in measured.items():
        for key in ("requests_per_s", "p50_ms", "p99_ms", "non_2xx"):
            figures[f"{name}_{key}"] = statistics.median(r.get(key, 0.0) for r in runs)
        figures[f"{name}_p99_runs"] = [r.get("p99_ms", 0.0) for r in runs]
    return figures


# -- one backend -----------------------------------------------------------------------------------


def run_backend(url: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from lamplighter import domains
    from lamplighter.core import identity
    from lamplighter.core.context import Actor
    from lamplighter.core.db import Database

    domains.load()
    engine_name = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"\n== {engine_name} ==  CPU check before: {cpu_check():.2f} s")
    reset(url)
    db = Database(url)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    results: dict[str, Any] = {"backend": engine_name}
    started = time.perf_counter()
    user_id, _ = organisation(db, args.slos + 2)
    slos = define_slos(db, args.slos)
    extra = define_slos_at(db, [args.slos, args.slos + 1])
    print(
        f"  {args.slos + 2} services and SLOs defined through the services in "
        f"{time.perf_counter() - started:.1f} s"
    )
    slo_ids = [slo_id for slo_id, _ in slos]
    filled = populate(db, slo_ids, now, args.days)
    print(f"  populated {filled['rows']:,} bucket rows in {filled['seconds']} s")
    results["rows"] = filled["rows"]

    figures = bench_evaluate(db, slo_ids, now, args.rounds)
    ratio = figures["evaluate_s"] / figures["floor_sums_s"]
    print(
        f"  evaluate_s: {figures['evaluate_s']:.3f} (runs "
        f"{', '.join(f'{r:.3f}' for r in figures['evaluate_runs'])}) for {len(slo_ids)} SLOs "
        f"over {args.days} days"
    )
    print(f"  floor raw SQL sums: {figures['floor_sums_s']:.3f} s; ratio ours/floor {ratio:.1f}")
    print(f"  target evaluate < 2 s: {'met' if figures['evaluate_s'] < 2 else 'NOT met'}")
    results |= figures | {"evaluate_ratio": ratio}
    if figures["evaluate_s"] >= 2 or args.profile:
        print(profile_evaluate(db, slo_ids, now))

    ingest_id = extra[0][0]
    service_figures = bench_ingest_service(db, ingest_id, now, args.ingest_batches, args.batch)
    ratio = service_figures["service_points_per_s"] / service_figures["floor_points_per_s"]
    print(
        f"  ingest through service.record_counts: "
        f"{service_figures['service_points_per_s']:,.0f} points/s "
        f"({args.ingest_batches} batches of {args.batch:,}, committed each); floor executemany "
        f"{service_figures['floor_points_per_s']:,.0f} points/s; ratio {ratio:.2f}"
    )
    print(
        "  target >= 20,000 points/s (service): "
        f"{'met' if service_figures['service_points_per_s'] >= 20_000 else 'NOT met'}"
    )
    results |= service_figures

    applied = bench_apply_and_rules(db, work, args.slos, args.rounds)
    if "apply_s" in applied:
        print(
            f"  apply_s: {applied['apply_s']:.2f} ({applied['apply_created']} SLOs created from "
            f"{args.slos} Sloth files); re-apply unchanged {applied['reapply_unchanged_s']:.2f} s"
        )
        print(f"  target apply < 10 s: {'met' if applied['apply_s'] < 10 else 'NOT met'}")
    else:
        print(f"  apply: {applied['apply']}")
    if "rules_s" in applied:
        print(
            f"  rules_s: {applied['rules_s']:.3f} (runs "
            f"{', '.join(f'{r:.3f}' for r in applied['rules_runs'])}); "
            f"{applied['rules_count']:,} rules, {applied['rules_bytes']:,} bytes"
        )
        print(f"  target rules < 1 s: {'met' if applied['rules_s'] < 1 else 'NOT met'}")
    else:
        print(f"  rules: {applied['rules']}")
    results |= applied

    with db.transaction() as session:
        _, token = identity.create_token(
            session=session, actor=Actor.system("bench"), user_id=user_id, name="bench"
        )
    db.dispose()
    env = os.environ | {
        "LAMPLIGHTER_DATABASE_URL": url,
        "LAMPLIGHTER_DATA_DIR": str(work / f"data-{engine_name}"),
        "LAMPLIGHTER_SECRET_KEY": os.environ["LAMPLIGHTER_SECRET_KEY"],
        "LAMPLIGHTER_LOG_LEVEL": "WARNING",
    }
    port = free_port()
    server = spawn_cli(
        env,
        "serve",
        "--no-worker",
        "--port",
        str(port),
        "--workers",
        "1",
        log=work / f"server-{engine_name}.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", timeout_s=60)
        api = bench_ingest_api(base, extra[1][0], extra[1][1], now, args.ingest_batches, args.batch)
        if isinstance(api, str):
            print(f"  ingest through the API: {api}")
        else:
            print(
                f"  ingest through POST /api/v1/slos/{{id}}/events: "
                f"{api['api_points_per_s']:,.0f} points/s ({args.ingest_batches} batches of "
                f"{args.batch:,}, one client)"
            )
            print(
                "  target >= 20,000 points/s (API): "
                f"{'met' if api['api_points_per_s'] >= 20_000 else 'NOT met'}"
            )
            results |= api
        if shutil.which("wrk") is None:
            print("  status GET: wrk is not installed (apt-get install wrk)")
        else:
            for connections in args.connections:
                got = bench_status_get(
                    base,
                    token,
                    slo_ids[len(slo_ids) // 2],
                    work,
                    seconds=args.seconds,
                    rounds=args.rounds,
                    connections=connections,
                )
                if isinstance(got, str):
                    print(f"  status GET: {got}")
                    break
                ratio = got["lamplighter_requests_per_s"] / got["floor_requests_per_s"]
                print(
                    f"  status GET ({got['body_bytes']} bytes), wrk -t2 -c{connections} "
                    f"-d{args.seconds}s, {args.rounds} alternating rounds, medians:"
                )
                for name in ("lamplighter", "floor"):
                    print(
                        f"    {name}: requests_per_s: {got[f'{name}_requests_per_s']:.0f}, "
                        f"p50_ms: {got[f'{name}_p50_ms']}, p99_ms: {got[f'{name}_p99_ms']} "
                        f"(rounds {got[f'{name}_p99_runs']}), non-2xx {got[f'{name}_non_2xx']:.0f}"
                    )
                print(f"    ratio ours/floor (requests/s): {ratio:.2f}")
                met = got["lamplighter_p99_ms"] < 20
                print(
                    f"  target status p99 < 20 ms at {connections} connections: "
                    f"{'met' if met else 'NOT met'}"
                )
                results |= {f"c{connections}_{key}": value for key, value in got.items()}
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"  CPU check after: {cpu_check():.2f} s")
    return results


def define_slos_at(db: Any, indexes: list[int]) -> list[tuple[int, str]]:
    """Built-in events SLOs on the services numbered ``indexes`` (the ingest targets)."""
    from lamplighter.core.context import Actor
    from lamplighter.slo import service
    from lamplighter.slo.schemas import SloIn

    found = []
    with db.transaction() as session:
        for index in indexes:
            slo, key = service.create(
                session=session,
                actor=Actor.system("bench"),
                data=SloIn(
                    entity=f"svc-{index:04d}", name="ingest", objective=99.9, source="events"
                ),
            )
            assert key is not None
            found.append((slo.id, key))
    return found


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--floor-server":
        floor_server(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--smoke", action="store_true", help="a tiny size: does it run at all")
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--pg-url", default=os.environ.get("LAMPLIGHTER_BENCH_SLO_PG", DEFAULT_PG))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per wrk round and server")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[4, 8, 16],
        help="comma-separated wrk connection counts, as the catalog GET's (4,8,16)",
    )
    parser.add_argument("--batch", type=int, default=5000, help="points per ingest batch")
    parser.add_argument("--ingest-batches", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="cProfile the evaluation")
    args = parser.parse_args()
    if args.smoke:
        args.slos, args.days, args.rounds, args.seconds = 20, 2, 1, 1
        args.connections, args.batch, args.ingest_batches = [2], 500, 2
    print(f"machine: {machine()}; load average {os.getloadavg()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    work = Path(tempfile.mkdtemp(prefix="lamplighter-bench-slo-"))
    try:
        for backend in backends:
            url = f"sqlite:///{work / 'slo.db'}" if backend == "sqlite" else args.pg_url
            run_backend(url, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
