"""`lamplighter ticket …` locally against the database and remotely through the API."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer
import uvicorn
from typer.testing import CliRunner

from lamplighter import cli as root_cli
from lamplighter.app import create_app
from lamplighter.core.settings import get_settings
from lamplighter.tickets import cli as ticket_cli
from lamplighter.tickets.models import Ticket
from tests.conftest import TEST_SECRET, make_team, make_token, make_user

FIXTURES = Path(__file__).parent / "fixtures"


def cli_app() -> typer.Typer:
    """The real `lamplighter` app once it registers `ticket`; until then the same callback."""
    if any(group.name == "ticket" for group in root_cli.app.registered_groups):
        return root_cli.app
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(root_cli.main_callback)
    ticket_cli.register(app)
    return app


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
    app = cli_app()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    yield invoke
    get_settings.cache_clear()


def test_new_then_list_the_triage_queue(run_cli: Any, db: Any) -> None:
    make_team(db, slug="payments")
    created = run_cli(
        "ticket", "new", "--type", "database", "--title", "Postgres for the ledger",
        "--priority", "p2", "--team", "payments", "--label", "db", "--label", "Urgent",
        "--output", "json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    ticket = json.loads(created.output)
    assert (ticket["type"], ticket["priority"], ticket["status"]) == ("database", "P2", "new")
    assert ticket["requesting_team"] == "payments" and ticket["labels"] == ["db", "urgent"]

    triage = json.loads(run_cli("ticket", "list", "--view", "triage", "--output", "json").output)
    assert [t["id"] for t in triage] == [ticket["id"]]
    table = run_cli("ticket", "list")
    assert "Postgres" in table.output and "payments" in table.output
    unknown = run_cli("ticket", "new", "--type", "kubernetes", "--title", "x")
    assert unknown.exit_code == 1 and "unknown request type" in unknown.output


def test_import_dry_run_then_real_then_again(run_cli: Any, db: Any) -> None:
    make_user(db, email="sre@example.com", role="sre")
    make_user(db, email="jane@example.com")
    args = ("ticket", "import", str(FIXTURES / "jira.csv"), "--format", "jira-csv")
    mapping = ("--mapping", str(FIXTURES / "jira-mapping.json"))

    dry = run_cli(*args, *mapping, "--dry-run", "--output", "json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["created"] == 3 and _tickets(db) == 0
    real = run_cli(*args, *mapping)  # table output, with the progress bar
    assert real.exit_code == 0, real.output
    assert "created" in real.output and "Mystery Person" in real.output
    assert _tickets(db) == 3
    again = json.loads(run_cli(*args, *mapping, "--output", "json").output)
    assert (again["created"], again["skipped_existing"]) == (0, 3)
    unmapped = run_cli(*args, "--output", "json")  # "Task" and "Access" need the mapping
    assert unmapped.exit_code == 1
    assert "row 3.Issue Type" in unmapped.output and "row 4.Issue Type" in unmapped.output


def test_report_prints_and_exports_csv(run_cli: Any, db: Any, tmp_path: Path) -> None:
    make_user(db, email="sre@example.com", role="sre")
    assert (
        run_cli("ticket", "import", str(FIXTURES / "plain.csv"), "--format", "csv").exit_code == 0
    )
    out = tmp_path / "toil.csv"

    result = run_cli(
        "ticket", "report", "--since", "2026-03-01", "--until", "2026-03-31",
        "--csv", str(out), "--output", "json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["totals"]["count"] == 4 and data["weeks"][0] == "2026-W09"
    rows = {r["type"]: r for r in csv.DictReader(out.open())}
    assert rows["database"]["effort_minutes_total"] == "90"
    table = run_cli("ticket", "report", "--since", "2026-03-01", "--until", "2026-03-31")
    assert "Automation candidates" in table.output and "database" in table.output


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


@pytest.fixture
def live_server(settings: Any, db: Any) -> Iterator[str]:
    from lamplighter.tickets import analytics_api

    app = create_app(settings, db=db)
    if not any(getattr(r, "path", "") == "/api/v1/tickets/import" for r in app.router.routes):
        before = list(app.router.routes)
        app.include_router(analytics_api.router, prefix="/api/v1")
        app.router.routes[:] = [r for r in app.router.routes if r not in before] + before
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
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


def test_remote_mode_goes_through_the_api(
    run_cli: Any, db: Any, live_server: str, tmp_path: Path
) -> None:
    sre = make_user(db, email="sre@example.com", role="sre")
    env = {"LAMPLIGHTER_TOKEN": make_token(db, sre)}
    remote = ("--url", live_server)
    plain = str(FIXTURES / "plain.csv")

    dry = run_cli(
        *remote, "ticket", "import", plain, "--format", "csv", "--dry-run", "-o", "json", env=env
    )
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["created"] == 4 and _tickets(db) == 0
    real = run_cli(*remote, "ticket", "import", plain, "--format", "csv", "-o", "json", env=env)
    assert json.loads(real.output)["created"] == 4 and _tickets(db) == 4
    new = run_cli(
        *remote, "ticket", "new", "--type", "other", "--title", "Hi", "-o", "json", env=env
    )
    assert json.loads(new.output)["status"] == "new"
    out = tmp_path / "remote.csv"
    report = run_cli(
        *remote, "ticket", "report", "--since", "2026-03-01", "--until", "2026-03-31",
        "--csv", str(out), "-o", "json", env=env,
    )  # fmt: skip
    assert json.loads(report.output)["totals"]["count"] == 4
    assert out.read_text().startswith("type,name,count")
    member = make_token(db, make_user(db))
    refused = run_cli(
        *remote, "ticket", "import", plain, "--format", "csv", env={"LAMPLIGHTER_TOKEN": member}
    )
    assert refused.exit_code == 1 and "HTTP 403" in refused.output


def _tickets(db: Any) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Ticket)) or 0)
