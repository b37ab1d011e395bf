"""Benchmark: self-service runs (issue 5).

Targets: golden path 1 ("Python web service") end to end in < 5 s on the embedded default, and
100 runs started at once all finish, none deadlocks, none duplicates a resource.

    python bench/selfservice.py [--repeat 5] [--runs 100] [--workers 2] [--pg-admin-url URL]
                                [--url URL] [--only golden,concurrent]

Golden path 1 runs on SQLite with local git, each run started and executed by the real job
worker in this process; its postgres.database step goes to the server of --pg-admin-url or
LAMPLIGHTER_BENCH_PG_ADMIN_URL (default: the lamplighter_admin role on 127.0.0.1) when it is
reachable; otherwise the benchmark runs a variant without the database step and says so.

The concurrent part starts ``--runs`` runs of a lighter template (repo.create + catalog.register,
a distinct name each) from 8 threads while ``--workers`` ``lamplighter worker --batch 1``
processes execute them, then counts what exists: exactly one repository and one catalog entity
per run, no dead job, no run left unfinished. Lamplighter's database is a fresh SQLite file, or
--url (a PostgreSQL database here is wiped).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from _common import machine, spawn_cli
from psycopg import sql
from pydantic import SecretStr

from lamplighter import domains
from lamplighter.catalog.models import Entity
from lamplighter.core import identity, jobs, migrate
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.models import Job
from lamplighter.core.settings import Settings
from lamplighter.selfservice import golden, runs, templates
from lamplighter.selfservice.actions.git import local_git_root
from lamplighter.selfservice.actions.simple import RUN_ANNOTATION
from lamplighter.selfservice.models import Run, RunStep

DEFAULT_PG_ADMIN = os.environ.get(
    "LAMPLIGHTER_BENCH_PG_ADMIN_URL",
    "postgresql://lamplighter_admin:lamplighter_admin@127.0.0.1:5432/postgres",
)
SECRET = "bench-secret-key-0123456789abcdef-selfservice"
SYSTEM = Actor.system("bench")
TARGET_GOLDEN_S = 5.0


def reset(url: str) -> None:
    if url.startswith("postgresql"):
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    migrate.upgrade(url)


def reachable(admin_url: str) -> str | None:
    """None when the admin URL connects; otherwise why not."""
    try:
        with psycopg.connect(admin_url, connect_timeout=3, autocommit=True):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def drop_databases(admin_url: str, names: list[str]) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{name}_owner")))


def organisation(db: Database) -> Actor:
    """The platform team owning the templates, and a requester in team payments."""
    with db.transaction() as session:
        for email, role in (("lead@example.com", "member"), ("dev@example.com", "member")):
            identity.create_user(
                session=session, actor=SYSTEM, email=email, display_name=email, role=role
            )
        identity.create_team(
            session=session,
            actor=SYSTEM,
            slug="platform",
            name="Platform",
            lead_email="lead@example.com",
        )
        identity.create_team(
            session=session,
            actor=SYSTEM,
            slug="payments",
            name="Payments",
            lead_email="lead@example.com",
        )
        identity.add_member(session=session, actor=SYSTEM, slug="payments", email="dev@example.com")
        user = identity.get_user_by_email(session=session, email="dev@example.com")
        assert user is not None
        team_ids = identity.team_ids_of(session=session, user_id=user.id)
        return Actor(
            kind="user", label=user.email, user_id=user.id, role=user.role, team_ids=team_ids
        )


def without_database(definition: dict[str, Any]) -> dict[str, Any]:
    """Golden path 1 minus its postgres.database step (and the catalog resource describing it)."""
    variant = copy.deepcopy(definition)
    variant["name"] = "python-web-service-no-db"
    variant["steps"] = [s for s in variant["steps"] if s["action"] != "postgres.database"]
    register = variant["steps"][-1]["input"]
    register["entities"] = [e for e in register["entities"] if e["kind"] != "resource"]
    for entity in register["entities"]:
        entity.pop("depends_on", None)
    variant["output"] = {"links": variant["output"]["links"][:2], "entities": []}
    return variant


def light_template(owner: str) -> dict[str, Any]:
    return {
        "name": "bench-light",
        "title": "Repository and catalog entry",
        "owner": owner,
        "request_type": "new-repository",
        "parameters": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z][a-z0-9-]+$"}},
        },
        "steps": [
            {
                "id": "repo",
                "action": "repo.create",
                "input": {"name": "${{ parameters.name }}", "owner": "${{ run.team }}"},
            },
            {
                "id": "register",
                "action": "catalog.register",
                "input": {"entities": [{"name": "${{ parameters.name }}", "type": "service"}]},
            },
        ],
    }


def wait_finished(db: Database, run_id: int, timeout_s: float = 120) -> Run:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with db.sessionmaker() as session:
            run = session.get(Run, run_id)
            assert run is not None
            if run.status in ("succeeded", "failed", "rejected"):
                return run
        time.sleep(0.01)
    raise RuntimeError(f"run {run_id} did not finish in {timeout_s}s")


# -- golden path 1 -------------------------------------------------------------------------------
def bench_golden(work: Path, *, repeat: int, admin_url: str | None) -> bool:
    domains.load()
    url = f"sqlite:///{work / 'golden.db'}"
    reset(url)
    db = Database(url)
    update: dict[str, Any] = {}
    why_not = reachable(admin_url) if admin_url else "no admin URL given"
    if why_not is None:
        update["selfservice_postgres_admin_url"] = SecretStr(admin_url or "")
    settings = Settings(
        database_url=url,
        data_dir=work / "golden-data",
        secret_key=SECRET,  # type: ignore[arg-type]
        job_poll_s=0.01,
        **update,
    )
    requester = organisation(db)
    with db.transaction() as session:
        loaded = golden.load_golden(session=session, actor=SYSTEM, settings=settings)
        assert not loaded.errors, loaded.errors
        template = "python-web-service"
        if why_not is not None:
            definition = templates.parse_yaml(
                (golden.GOLDEN_DIR / "python-web-service.yaml").read_text()
            )
            template = templates.create(
                session=session, actor=SYSTEM, definition=without_database(definition)
            ).name
    if why_not is None:
        print(f"golden path 1 on SQLite + local git + PostgreSQL ({admin_url.split('@')[-1]})")  # type: ignore[union-attr]
    else:
        print(f"golden path 1 WITHOUT the database step: PostgreSQL not reachable ({why_not})")

    worker = jobs.Worker(db, settings)
    names = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(repeat)]
    totals: list[float] = []
    per_step: dict[str, list[float]] = {}
    try:
        for name in names:
            started = time.perf_counter()
            with db.transaction() as session:
                run_id = runs.start(
                    session=session,
                    actor=requester,
                    template_name=template,
                    parameters={
                        "name": name,
                        "description": "Benchmark service",
                        "database": why_not is None,
                    },
                    settings=settings,
                ).id
                # The golden path creates a database, so it waits for the team lead (issue 11):
                # approved at once here, since what is measured is the run, not the waiting.
                if runs.get(session=session, run_id=run_id).status == "awaiting_approval":
                    runs.approve(session=session, actor=SYSTEM, run_id=run_id)
            while worker.run_once():
                pass
            run = wait_finished(db, run_id, timeout_s=5)
            elapsed = time.perf_counter() - started
            if run.status != "succeeded":
                raise RuntimeError(f"run {run_id} {run.status}: {run.error}")
            totals.append(elapsed)
            with db.sessionmaker() as session:
                for step in session.scalars(sa.select(RunStep).where(RunStep.run_id == run_id)):
                    if step.started_at and step.finished_at:
                        seconds = (step.finished_at - step.started_at).total_seconds()
                        per_step.setdefault(step.step_id, []).append(seconds)
    finally:
        if why_not is None and admin_url:
            drop_databases(admin_url, [n.replace("-", "_") for n in names])
        db.dispose()
    worst = max(totals)
    print(
        f"  {repeat} runs, start to succeeded: median {statistics.median(totals):.2f} s, "
        f"max {worst:.2f} s (first {totals[0]:.2f} s)"
    )
    steps = ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in per_step.items())
    print(f"  median per step: {steps}")
    met = worst < TARGET_GOLDEN_S
    print(f"  target < {TARGET_GOLDEN_S:.0f} s end to end: {'met' if met else 'NOT met'}")
    return met


# -- 100 runs at once ----------------------------------------------------------------------------
def bench_concurrent(work: Path, *, total: int, workers: int, url: str | None) -> bool:
    domains.load()
    url = url or f"sqlite:///{work / 'concurrent.db'}"
    reset(url)
    db = Database(url)
    data_dir = work / "concurrent-data"
    settings = Settings(database_url=url, data_dir=data_dir, secret_key=SECRET)  # type: ignore[arg-type]
    requester = organisation(db)
    with db.transaction() as session:
        templates.create(session=session, actor=SYSTEM, definition=light_template("platform"))
    engine = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    print(
        f"{total} runs of repo.create + catalog.register started at once on {engine}, "
        f"{workers} worker processes (--batch 1)"
    )
    env = os.environ | {
        "LAMPLIGHTER_DATABASE_URL": url,
        "LAMPLIGHTER_DATA_DIR": str(data_dir),
        "LAMPLIGHTER_SECRET_KEY": SECRET,
        "LAMPLIGHTER_LOG_LEVEL": "WARNING",
        "LAMPLIGHTER_JOB_POLL_S": "0.05",
    }
    processes = [
        spawn_cli(env, "worker", "--batch", "1", log=work / f"worker{i}.log")
        for i in range(workers)
    ]
    names = [f"svc-{i:03d}" for i in range(total)]
    try:
        time.sleep(3)  # the workers import Lamplighter first; their start-up is not measured
        started = time.perf_counter()

        def start_one(name: str) -> int:
            with db.transaction() as session:
                return runs.start(
                    session=session,
                    actor=requester,
                    template_name="bench-light",
                    parameters={"name": name},
                ).id

        with ThreadPoolExecutor(max_workers=8) as pool:
            run_ids = list(pool.map(start_one, names))
        started_s = time.perf_counter() - started
        finished = [wait_finished(db, run_id, timeout_s=600) for run_id in run_ids]
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    with db.sessionmaker() as session:
        statuses = [run.status for run in finished]
        failed = [(run.id, run.error) for run in finished if run.status != "succeeded"]
        jobs_by_status = dict(
            session.execute(
                sa.select(Job.status, sa.func.count())
                .where(Job.kind == runs.RUN_JOB)
                .group_by(Job.status)
            ).all()
        )
        per_worker = sorted(
            count
            for (count,) in session.execute(
                sa.select(sa.func.count()).where(Job.kind == runs.RUN_JOB).group_by(Job.locked_by)
            )
        )
        durations: dict[str, list[float]] = {}
        for step in session.scalars(sa.select(RunStep)):
            if step.started_at and step.finished_at:
                seconds = (step.finished_at - step.started_at).total_seconds()
                durations.setdefault(step.step_id, []).append(seconds)
        retried = session.scalar(
            sa.select(sa.func.count()).where(Job.kind == runs.RUN_JOB, Job.attempts > 1)
        )
        entities = session.scalar(
            sa.select(sa.func.count(sa.distinct(Entity.name_key))).where(
                Entity.annotations[RUN_ANNOTATION].as_string().is_not(None)
            )
        )
        entity_rows = session.scalar(
            sa.select(sa.func.count()).where(
                Entity.annotations[RUN_ANNOTATION].as_string().is_not(None)
            )
        )
    db.dispose()
    repositories = sorted(p.name for p in local_git_root(settings).iterdir())
    succeeded = statuses.count("succeeded")
    print(
        f"  started in {started_s:.2f} s; all finished {elapsed:.1f} s after the first start "
        f"({total / elapsed:.1f} runs/s)"
    )
    print(
        f"  runs succeeded {succeeded}/{total}; jobs {jobs_by_status} (per worker {per_worker}), "
        f"retried {retried}; "
        f"repositories {len(repositories)}; catalog entities {entity_rows} "
        f"({entities} distinct names)"
    )
    steps = ", ".join(
        f"{k} median {statistics.median(v) * 1000:.0f} ms, max {max(v) * 1000:.0f} ms"
        for k, v in durations.items()
    )
    print(f"  per step: {steps}")
    for run_id, error in failed[:5]:
        print(f"  run {run_id} failed: {error}")
    ok = (
        succeeded == total
        and jobs_by_status.get("dead", 0) == 0
        and repositories == [f"{name}.git" for name in names]
        and entity_rows == total
        and entities == total
    )
    print(
        f"  target: all {total} finish, none dead, exactly one repository and one entity each: "
        f"{'met' if ok else 'NOT met'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="golden path 1 runs to time")
    parser.add_argument("--runs", type=int, default=100, help="runs started at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--url", default=None, help="Lamplighter DB of the concurrent part")
    parser.add_argument("--only", default="golden,concurrent")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    print(f"machine: {machine()}; load average {os.getloadavg()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    work = Path(tempfile.mkdtemp(prefix="lamplighter-bench-selfservice-"))
    results = []
    try:
        if "golden" in parts:
            results.append(bench_golden(work, repeat=args.repeat, admin_url=args.pg_admin_url))
        if "concurrent" in parts:
            results.append(
                bench_concurrent(work, total=args.runs, workers=args.workers, url=args.url)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")
    if not all(results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
