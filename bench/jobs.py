"""Benchmark: job throughput, enqueue -> claim -> done, with real worker processes.

Target (issue 2): >= 2,000 trivial jobs/s on PostgreSQL with two workers.

    python bench/jobs.py [--jobs 20000] [--pg-url URL]

PostgreSQL comes from --pg-url or LAMPLIGHTER_BENCH_DATABASE_URL (default: the lamplighter_bench
database that .ci/postgres.sh creates). The database is wiped. SQLite with one worker is measured
too, for reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from _common import machine, spawn_cli

from lamplighter.core import jobs, migrate
from lamplighter.core.db import Database
from lamplighter.core.models import Job

DEFAULT_PG = "postgresql+psycopg://lamplighter:lamplighter@127.0.0.1:5432/lamplighter_bench"


def reset(url: str) -> None:
    if url.startswith("postgresql"):
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    migrate.upgrade(url)


def run(
    url: str, *, total: int, workers: int, work_dir: Path, kind: str = "core.noop"
) -> dict[str, float]:
    reset(url)
    db = Database(url)
    started = time.perf_counter()
    for offset in range(0, total, 1000):
        with db.transaction() as session:
            jobs.enqueue_many(
                session=session,
                kind=kind,
                payloads=[{"n": n} for n in range(offset, min(total, offset + 1000))],
            )
    enqueue_s = time.perf_counter() - started
    env = os.environ | {
        "LAMPLIGHTER_DATABASE_URL": url,
        "LAMPLIGHTER_LOG_LEVEL": "WARNING",
        "LAMPLIGHTER_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "LAMPLIGHTER_DATA_DIR": str(work_dir),
        "LAMPLIGHTER_PLUGINS": "benchkinds",
        "PYTHONPATH": str(Path(__file__).resolve().parent),
    }
    processes = [spawn_cli(env, "worker", log=work_dir / f"worker{i}.log") for i in range(workers)]
    try:
        started = time.perf_counter()
        first_done = None
        while True:
            with db.sessionmaker() as session:
                done = (
                    session.scalar(
                        sa.select(sa.func.count()).select_from(Job).where(Job.status == "done")
                    )
                    or 0
                )
            if done and first_done is None:
                first_done = time.perf_counter()
            if done >= total:
                break
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"only {done} of {total} jobs done after 300 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - (first_done or started)
        with db.sessionmaker() as session:
            by_worker = dict(
                session.execute(
                    sa.select(Job.locked_by, sa.func.count()).group_by(Job.locked_by)
                ).all()
            )
            attempts = session.scalar(sa.select(sa.func.max(Job.attempts)))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        db.dispose()
    return {
        "enqueue_jobs_per_s": round(total / enqueue_s),
        "processed_jobs_per_s": round(total / elapsed),
        "workers_that_ran_jobs": float(len([k for k in by_worker if k])),
        "max_attempts_seen": float(attempts or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument(
        "--pg-url", default=os.environ.get("LAMPLIGHTER_BENCH_DATABASE_URL", DEFAULT_PG)
    )
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="lamplighter-jobs-bench-"))
    try:
        print(f"machine: {machine()}")
        pg = run(args.pg_url, total=args.jobs, workers=2, work_dir=work_dir)
        print(f"PostgreSQL, 2 worker processes, {args.jobs} core.noop jobs:")
        for key, value in pg.items():
            print(f"  {key}: {value}")
        print(
            f"  target >= 2000 jobs/s: {'met' if pg['processed_jobs_per_s'] >= 2000 else 'NOT met'}"
        )
        isolated = run(
            args.pg_url, total=args.jobs // 4, workers=2, work_dir=work_dir, kind="bench.isolated"
        )
        print(f"PostgreSQL, 2 worker processes, {args.jobs // 4} bench.isolated jobs:")
        for key, value in isolated.items():
            print(f"  {key}: {value}")
        sqlite = run(
            f"sqlite:///{work_dir / 'bench.db'}", total=args.jobs, workers=1, work_dir=work_dir
        )
        print(f"SQLite, 1 worker process, {args.jobs} core.noop jobs (reference):")
        for key, value in sqlite.items():
            print(f"  {key}: {value}")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
