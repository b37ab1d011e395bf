"""`lamplighter ticket …` locally against the database and remotely through the API."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lamplighter.tickets.models import Ticket
from tests.conftest import make_team, make_token, make_user

FIXTURES = Path(__file__).parent / "fixtures"


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


# -- filing for someone else, and tables that keep every value ----------------------------------
LONG_TITLE = (
    "Provision a replicated Postgres cluster for the ledger-reconciliation-service-eu-west-1 "
    "with point-in-time recovery and a read replica for the reporting team"
)


def test_new_with_user_files_the_ticket_for_that_person(run_cli: Any, db: Any) -> None:
    ada = make_user(db, email="ada@example.com")
    make_team(db, slug="payments", lead=ada)
    args = ("ticket", "new", "--type", "database", "--title", "Postgres")
    mine = json.loads(run_cli(*args, "--user", "ADA@example.com", "-o", "json").output)
    assert (mine["requester"], mine["requesting_team"]) == ("ada@example.com", "payments")
    table = run_cli(*args, "--user", "ada@example.com")
    assert (
        table.exit_code == 0 and "requester" in table.output and "ada@example.com" in table.output
    )
    anonymous = json.loads(run_cli(*args, "-o", "json").output)
    assert anonymous["requester"] is None  # the system files it: shown as "Lamplighter"
    ghost = run_cli(*args, "--user", "ghost@example.com")
    assert ghost.exit_code == 1 and "ghost@example.com" in ghost.output


def test_remote_new_for_someone_else_is_for_sres_and_admins(
    run_cli: Any, db: Any, live_server: str
) -> None:
    sre = make_user(db, email="sre@example.com", role="sre")
    member = make_user(db, email="mel@example.com")
    make_user(db, email="ada@example.com")
    args = ("--url", live_server, "ticket", "new", "--type", "other", "--title", "Hi")
    refused = run_cli(
        *args, "--user", "ada@example.com", env={"LAMPLIGHTER_TOKEN": make_token(db, member)}
    )
    assert refused.exit_code == 1
    assert "HTTP 403" in refused.output and "only SREs and admins may file" in refused.output
    assert _tickets(db) == 0
    own = run_cli(
        *args, "--user", "mel@example.com", "-o", "json",
        env={"LAMPLIGHTER_TOKEN": make_token(db, member)},
    )  # fmt: skip
    assert json.loads(own.output)["requester"] == "mel@example.com"  # naming yourself is fine
    filed = run_cli(
        *args, "--user", "ada@example.com", "-o", "json",
        env={"LAMPLIGHTER_TOKEN": make_token(db, sre)},
    )  # fmt: skip
    assert json.loads(filed.output)["requester"] == "ada@example.com"


def test_ticket_tables_never_cut_a_value(run_cli: Any, db: Any) -> None:
    make_user(db, email="someone.with.a.long.address@payments.example.com")
    created = run_cli(
        "ticket", "new", "--type", "database", "--title", LONG_TITLE,
        "--assignee", "someone.with.a.long.address@payments.example.com",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert LONG_TITLE in created.output  # a pipe is not cut at 80 columns: one whole line

    piped = run_cli("ticket", "list")
    assert LONG_TITLE in piped.output and "…" not in piped.output
    assert "someone.with.a.long.address@payments.example.com" in piped.output

    wide = run_cli("ticket", "list", env={"COLUMNS": "400"})  # a wide terminal: all of it
    assert LONG_TITLE in wide.output
    assert max(len(line) for line in wide.output.splitlines()) > 200

    narrow = run_cli("ticket", "list", env={"COLUMNS": "70"})  # a narrow one: values fold
    assert "…" not in narrow.output
    assert max(len(line) for line in narrow.output.splitlines()) <= 70
    title_cells = [line.split("│")[5] for line in narrow.output.splitlines() if "│" in line]
    assert "".join("".join(title_cells).split()) == "".join(LONG_TITLE.split())
