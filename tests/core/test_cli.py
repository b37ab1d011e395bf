"""The CLI, locally against the database and remotely against a running server."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
from typer.core import TyperGroup
from typer.testing import CliRunner

from lamplighter.cli import COMMANDS, load_command
from lamplighter.cli import app as cli_app
from tests.conftest import make_team, make_token, make_user


def test_local_user_team_member_token_flow(run_cli: Any, db: Any) -> None:
    created = run_cli(
        "user",
        "create",
        "--email",
        "Lead@Example.com",
        "--name",
        "Lead",
        "--time-zone",
        "Europe/Oslo",
        "--output",
        "json",
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["email"] == "lead@example.com"
    run_cli("user", "create", "--email", "dev@example.com", "--name", "Dev")
    team = run_cli(
        "team",
        "create",
        "--slug",
        "search",
        "--name",
        "Search",
        "--lead",
        "lead@example.com",
        "--output",
        "json",
    )
    assert json.loads(team.output)["lead"]["email"] == "lead@example.com"
    members = run_cli("team", "add-member", "search", "dev@example.com", "--output", "json")
    assert sorted(m["email"] for m in json.loads(members.output)) == [
        "dev@example.com",
        "lead@example.com",
    ]
    token = run_cli(
        "token",
        "create",
        "--user",
        "dev@example.com",
        "--name",
        "ci",
        "--expires-in-days",
        "30",
        "--output",
        "json",
    )
    body = json.loads(token.output)
    assert body["token"].startswith("llt_") and body["expires_at"]
    revoked = run_cli("token", "revoke", str(body["id"]), "--output", "json")
    assert json.loads(revoked.output)["revoked_at"] is not None
    table = run_cli("team", "list")
    assert "search" in table.output


def test_local_errors_exit_non_zero_with_a_reason(run_cli: Any, db: Any) -> None:
    result = run_cli("team", "create", "--slug", "x", "--name", "X", "--lead", "ghost@example.com")
    assert result.exit_code == 1
    assert "no user with email ghost@example.com" in result.output
    bad_tz = run_cli(
        "user", "create", "--email", "tz@example.com", "--name", "T", "--time-zone", "Nowhere/City"
    )
    assert bad_tz.exit_code == 1 and "IANA" in bad_tz.output


def test_jobs_list_and_version(run_cli: Any, db: Any) -> None:
    assert json.loads(run_cli("jobs", "list", "--dead", "--output", "json").output) == []
    version = json.loads(run_cli("version", "--output", "json").output)
    assert version["version"]


def test_remote_mode_uses_the_api_with_the_token_rights(
    run_cli: Any, db: Any, live_server: str
) -> None:
    admin = make_user(db, role="admin")
    lead = make_user(db)
    admin_token = make_token(db, admin)
    env = {"LAMPLIGHTER_TOKEN": admin_token}
    created = run_cli(
        "--url",
        live_server,
        "team",
        "create",
        "--slug",
        "remote",
        "--name",
        "Remote",
        "--lead",
        lead.email,
        "--output",
        "json",
        env=env,
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["slug"] == "remote"
    listed = httpx.get(
        f"{live_server}/api/v1/teams/remote", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert listed.status_code == 200
    token = run_cli(
        "--url",
        live_server,
        "token",
        "create",
        "--user",
        lead.email,
        "--name",
        "remote-ci",
        "--output",
        "json",
        env=env,
    )
    plaintext = json.loads(token.output)["token"]
    me = httpx.get(f"{live_server}/api/v1/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert me.json()["email"] == lead.email
    verify = run_cli("--url", live_server, "audit", "verify", "--output", "json", env=env)
    assert json.loads(verify.output)["ok"] is True


def test_remote_mode_reports_refusals(run_cli: Any, db: Any, live_server: str) -> None:
    member = make_user(db)
    make_team(db, slug="theirs")
    token = make_token(db, member)
    result = run_cli(
        "--url",
        live_server,
        "team",
        "add-member",
        "theirs",
        member.email,
        env={"LAMPLIGHTER_TOKEN": token},
    )
    assert result.exit_code == 1
    assert "HTTP 403" in result.output
    no_token = run_cli("--url", live_server, "jobs", "list")
    assert no_token.exit_code == 1 and "LAMPLIGHTER_TOKEN" in no_token.output


def test_help_lists_every_command_and_each_one_loads() -> None:
    result = CliRunner().invoke(cli_app, ["--help"], catch_exceptions=False)
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in result.output, name
        command = load_command(name)
        assert command.name == name and (command.help or command.callback), name
    # a sub-app with one command stays a group: `lamplighter db upgrade`, not `lamplighter db`
    assert isinstance(load_command("db"), TyperGroup)


def test_a_catalog_command_starts_without_the_other_domains() -> None:
    """Each domain's commands load when used: `catalog import` does not pay for the web
    framework or the self-service and ticket modules."""
    probe = (
        "import sys\n"
        "from lamplighter.cli import main\n"
        "sys.argv = ['lamplighter', 'catalog', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('fastapi', 'lamplighter.selfservice.cli', "
        "'lamplighter.tickets.cli') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "The service catalog." in out
    assert out.strip().splitlines()[-1] == "[]"
