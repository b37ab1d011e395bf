"""Every benchmark in bench/ runs to its end at a tiny size, so a refactor that breaks one fails
the suite. The figures themselves are not checked here: they belong in docs/benchmarks.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[1]
BENCH_PG = os.environ.get(
    "LAMPLIGHTER_BENCH_DATABASE_URL",
    "postgresql+psycopg://lamplighter:lamplighter@127.0.0.1:5432/lamplighter_bench",
)
PG_ADMIN = os.environ.get(
    "LAMPLIGHTER_TEST_PG_ADMIN_URL",
    "postgresql://lamplighter_admin:lamplighter_admin@127.0.0.1:5432/postgres",
)
# script → (tiny arguments, a figure its output must name, what it needs)
CASES: dict[str, tuple[list[str], str, set[str]]] = {
    "http_get.py": (
        ["--seconds", "1", "--connections", "2", "--workers", "1"],
        "requests_per_s:",
        {"wrk"},
    ),
    "jobs.py": (["--jobs", "200", "--pg-url", BENCH_PG], "processed_jobs_per_s:", {"pg"}),
    "catalog.py": (
        [
            "--entities",
            "10000",
            "--backends",
            "sqlite",
            "--seconds",
            "1",
            "--repeat",
            "1",
            "--connections",
            "2",
            "--samples",
            "5",
        ],
        "import_10k_s:",
        {"wrk"},
    ),
    "tickets.py": (
        [
            "--tickets",
            "1000",
            "--import-rows",
            "200",
            "--seconds",
            "1",
            "--paced-users",
            "1",
            "--connections",
            "1",
            "--skip-pg",
        ],
        "requests_per_s:",
        {"wrk"},
    ),
    "slo.py": (["--backend", "sqlite", "--smoke"], "evaluate_s:", {"wrk"}),
    "ingest.py": (
        [
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--connections",
            "2",
            "--notify-seconds",
            "1",
            "--escalations",
            "50",
            "--settle-seconds",
            "1",  # the test run keeps the machine busy: it would never be quiet
        ],
        "alerts/s",
        {"wrk", "alertmanager"},
    ),
    "selfservice.py": (
        ["--repeat", "1", "--runs", "3", "--workers", "1", "--pg-admin-url", PG_ADMIN],
        "target: all 3 finish",
        {"pg", "git"},
    ),
}


def _postgres_reachable() -> bool:
    try:
        engine = sa.create_engine(BENCH_PG)
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError:
        return False
    return True


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", sorted(CASES))
def test_each_benchmark_runs_to_its_end_at_a_tiny_size(script: str, tmp_path: Path) -> None:
    arguments, figure, needs = CASES[script]
    if "wrk" in needs:
        require(shutil.which("wrk") is not None, "wrk (apt-get install wrk)")
    if "alertmanager" in needs:
        require(
            shutil.which("prometheus-alertmanager") is not None,
            "Alertmanager (prometheus-alertmanager)",
        )
    if "git" in needs:
        require(shutil.which("git") is not None, "git")
    if "pg" in needs:
        require(_postgres_reachable(), f"PostgreSQL at {BENCH_PG}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMPLIGHTER_")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert figure in done.stdout, done.stdout[-4000:]
