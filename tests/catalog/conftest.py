"""Catalog fixtures: registering entities, the CLI runner and a live server for remote mode."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from lamplighter.app import create_app
from lamplighter.catalog import service
from lamplighter.catalog.models import Entity
from lamplighter.cli import app as cli_app
from lamplighter.core.db import Database
from lamplighter.core.settings import get_settings
from tests.conftest import SYSTEM, TEST_SECRET


def make_entity(
    db: Database, name: str, owner: str, kind: str = "service", **fields: Any
) -> Entity:
    with db.transaction() as session:
        return service.create(
            session=session,
            actor=SYSTEM,
            data=service.EntityInput(kind=kind, name=name, owner=owner, **fields),
        )


@pytest.fixture
def run_cli(
    database_url: str, db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Any]:
    monkeypatch.setenv("LAMPLIGHTER_DATABASE_URL", database_url)
    monkeypatch.setenv("LAMPLIGHTER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LAMPLIGHTER_URL", raising=False)
    monkeypatch.delenv("LAMPLIGHTER_TOKEN", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(cli_app, list(args), env=env, catch_exceptions=False)

    yield invoke
    get_settings.cache_clear()


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


@pytest.fixture
def live_server(settings: Any, db: Any) -> Iterator[str]:
    config = uvicorn.Config(create_app(settings, db=db), host="127.0.0.1", port=0, log_config=None)
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started and server.servers:
            break
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
