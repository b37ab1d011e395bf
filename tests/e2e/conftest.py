"""A real Lamplighter server (uvicorn in a subprocess, fresh SQLite file) and the system Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from lamplighter import domains
from lamplighter.core import jobs, migrate
from lamplighter.core.db import Database
from lamplighter.core.models import Job
from lamplighter.core.settings import Settings
from tests.conftest import TEST_SECRET, make_team, make_user, require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "lamplighter-e2e-password"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    email: str
    password: str
    team_slug: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def lamplighter_server(url: str, data_dir: Path, **env: str) -> Iterator[str]:
    """A Lamplighter web server (uvicorn in a subprocess, no job worker) on ``url``'s database;
    yields its base URL once /healthz answers, and stops it afterwards."""
    port = _free_port()
    environment = {
        **os.environ,
        "LAMPLIGHTER_DATABASE_URL": url,
        "LAMPLIGHTER_DATA_DIR": str(data_dir),
        "LAMPLIGHTER_SECRET_KEY": TEST_SECRET,
        **env,
    }
    environment.pop("LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL", None)
    command = [sys.executable, "-m", "uvicorn", "lamplighter.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def work_off(url: str, data_dir: Path) -> None:
    """A job worker of the test's own against the server's database, until no job is queued
    (the servers run none, as in production, so a page learns of progress only from the
    database)."""
    db = Database(url)
    settings = Settings(database_url=url, data_dir=data_dir, secret_key=TEST_SECRET)
    domains.load(settings)  # as `lamplighter worker` does: a test may run on its own
    worker = jobs.Worker(db, settings)
    try:
        for _ in range(400):
            if worker.run_once():
                continue
            with db.transaction() as session:
                waiting = session.scalar(
                    sa.select(sa.func.count()).select_from(Job).where(Job.status == "queued")
                )
            if not waiting:
                return
            time.sleep(0.05)
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{data_dir / 'lamplighter.db'}"
    migrate.upgrade(url)
    db = Database(url)
    ada = make_user(
        db, email="ada@example.com", password=PASSWORD, role="member", time_zone="Europe/London"
    )
    lin = make_user(db, email="lin@example.com", password=PASSWORD)
    make_team(db, slug="payments", lead=lin, members=[ada])
    db.dispose()

    with lamplighter_server(url, data_dir) as base_url:
        yield LiveServer(
            base_url=base_url, email=ada.email, password=PASSWORD, team_slug="payments"
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require(CHROMIUM.exists(), "Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
