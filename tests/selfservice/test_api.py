"""Self-service over HTTP: templates, runs executed by the real worker, approvals, secrets,
bad input named by field, and access grants."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from lamplighter.catalog import service as catalog
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    registered,
)
from lamplighter.selfservice.models import Run
from tests.conftest import SYSTEM, auth, make_team, make_token, make_user
from tests.helpers import drain


# -- small actions for these tests (the golden paths are tested elsewhere) ---------------------
class FileInput(ActionInput):
    directory: str
    name: str


class FileOutput(ActionOutput):
    path: str


class WriteFile(Action):
    """Writes a file marked with ctx.key; compensation removes it."""

    name = "apitest.file"
    title = "Write a file"
    Input = FileInput
    Output = FileOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: FileInput) -> FileOutput:
        path = Path(data.directory) / data.name
        if path.exists() and path.read_text() != ctx.key:
            raise ActionError(f"a file named {data.name!r} exists already", field="name")
        path.write_text(ctx.key)
        ctx.log(f"wrote {data.name}")
        return FileOutput(path=str(path))

    def compensate(self, ctx: StepContext, data: FileInput, output: Any) -> None:
        path = Path(data.directory) / data.name
        if path.exists() and path.read_text() == ctx.key:
            path.unlink()


class BlockerInput(ActionInput):
    blocker: str


class BlockerOutput(ActionOutput):
    ok: bool


class FailWhileBlocked(Action):
    name = "apitest.blocked"
    title = "Fail while a blocker file exists"
    Input = BlockerInput
    Output = BlockerOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: BlockerInput) -> BlockerOutput:
        if Path(data.blocker).exists():
            raise ActionError(f"blocked by {Path(data.blocker).name}")
        return BlockerOutput(ok=True)

    def compensate(self, ctx: StepContext, data: BlockerInput, output: Any) -> None:
        return None


class NoInput(ActionInput):
    pass


class PasswordOutput(ActionOutput):
    password: str


class MakePassword(Action):
    name = "apitest.password"
    title = "Generate a password"
    Input = NoInput
    Output = PasswordOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: NoInput) -> PasswordOutput:
        return PasswordOutput(password=ctx.secret("db_password", "pw-" + secrets.token_hex(12)))

    def compensate(self, ctx: StepContext, data: NoInput, output: Any) -> None:
        return None


@pytest.fixture(autouse=True)
def _test_actions() -> Iterator[None]:
    """This module's own actions, known to the registry only while its tests run."""
    with registered(WriteFile, FailWhileBlocked, MakePassword):
        yield


TEMPLATE_YAML = """\
name: files
title: Two files
description: Writes a README and, when asked, a LICENSE.
owner: payments
parameters:
  type: object
  required: [name, directory]
  properties:
    name: {{type: string, pattern: "^[a-z]+$", description: "A short name"}}
    directory: {{type: string}}
    license: {{type: boolean, default: false}}
steps:
  - id: readme
    action: apitest.file
    input:
      directory: ${{{{ parameters.directory }}}}
      name: ${{{{ parameters.name }}}}-README
  - id: license
    action: apitest.file
    if: ${{{{ parameters.license }}}}
    input:
      directory: ${{{{ parameters.directory }}}}
      name: LICENSE
output:
  links: [{{title: Readme, url: "https://files.example.com${{{{ steps.readme.output.path }}}}"}}]
{extra}
"""


# -- helpers -----------------------------------------------------------------------------------


def audit_count(db: Database) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0)


def run_count(db: Database) -> int:
    with db.sessionmaker() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Run)) or 0)


class Org:
    def __init__(self, db: Database) -> None:
        self.lead: User = make_user(db, email="lead@example.com")
        self.dev: User = make_user(db, email="dev@example.com")
        self.other: User = make_user(db, email="other@example.com")
        self.outsider: User = make_user(db, email="outsider@example.com")
        make_team(db, slug="payments", lead=self.lead, members=[self.dev, self.other])
        make_team(db, slug="search", lead=self.outsider)
        self.tokens = {
            name: auth(make_token(db, user))
            for name, user in {
                "lead": self.lead,
                "dev": self.dev,
                "other": self.other,
                "outsider": self.outsider,
            }.items()
        }


@pytest.fixture
def org(db: Database) -> Org:
    return Org(db)


def register_template(client: Any, org: Org, extra: str = "") -> dict[str, Any]:
    response = client.post(
        "/api/v1/templates",
        json={"yaml": TEMPLATE_YAML.format(extra=extra)},
        headers=org.tokens["dev"],
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def start(client: Any, org: Org, who: str = "dev", **body: Any) -> Any:
    return client.post("/api/v1/templates/files/runs", json=body, headers=org.tokens[who])


# -- runs --------------------------------------------------------------------------------------
def test_a_run_started_through_the_api_is_executed_and_shows_its_steps(
    client: Any, db: Database, settings: Settings, org: Org, tmp_path: Path
) -> None:
    register_template(client, org)
    started = start(
        client, org, parameters={"name": "ledger", "directory": str(tmp_path), "license": True}
    )
    assert started.status_code == 201, started.text
    run = started.json()
    assert started.headers["location"] == f"/api/v1/runs/{run['id']}"
    assert (run["status"], run["requester"], run["requesting_team"]) == (
        "queued",
        "dev@example.com",
        "payments",
    )
    assert [s["status"] for s in run["steps"]] == ["pending", "pending"]

    drain(db, settings)
    detail = client.get(f"/api/v1/runs/{run['id']}", headers=org.tokens["outsider"]).json()
    assert detail["status"] == "succeeded", detail["error"]
    readme, license_ = detail["steps"]
    assert (readme["id"], readme["status"], license_["status"]) == (
        "readme",
        "succeeded",
        "succeeded",
    )
    assert readme["input"] == {"directory": str(tmp_path), "name": "ledger-README"}
    assert readme["output"] == {"path": str(tmp_path / "ledger-README")}
    assert "wrote ledger-README" in readme["log"]
    assert (tmp_path / "ledger-README").exists() and (tmp_path / "LICENSE").exists()
    assert detail["ticket_id"] is not None
    assert detail["outputs"]["links"] == [
        {"title": "Readme", "url": f"https://files.example.com{tmp_path / 'ledger-README'}"}
    ]

    mine = client.get("/api/v1/runs", params={"mine": "true"}, headers=org.tokens["dev"]).json()
    assert [r["id"] for r in mine["items"]] == [run["id"]]
    theirs = client.get("/api/v1/runs?mine=true", headers=org.tokens["outsider"]).json()
    assert theirs["items"] == []
    done = client.get(
        "/api/v1/runs",
        params={"template": "files", "status": "succeeded"},
        headers=org.tokens["dev"],
    ).json()
    assert [r["id"] for r in done["items"]] == [run["id"]]


def test_bad_parameters_and_unknown_fields_are_named_and_start_nothing(
    client: Any, db: Database, org: Org, tmp_path: Path
) -> None:
    register_template(client, org)
    wrong = start(client, org, parameters={"name": "Not Valid", "directory": str(tmp_path)})
    assert wrong.status_code == 422
    assert [e["field"] for e in wrong.json()["errors"]] == ["body.parameters.name"]
    huge = start(client, org, parameters={"name": "A" * 200_000, "directory": str(tmp_path)})
    assert huge.status_code == 422 and len(huge.json()["errors"][0]["reason"]) <= 500
    missing = start(client, org, parameters={"name": "ok"})
    assert [e["field"] for e in missing.json()["errors"]] == ["body.parameters.directory"]
    extra = start(client, org, parameters={"name": "ok", "directory": "/tmp"}, colour="blue")
    assert extra.status_code == 422
    assert extra.json()["errors"][0]["field"] == "body.colour"
    typed = start(client, org, parameters={"name": "ok", "directory": "/tmp"}, dry_run="maybe")
    assert typed.status_code == 422 and typed.json()["errors"][0]["field"] == "body.dry_run"
    malformed = client.post(
        "/api/v1/templates/files/runs",
        content=b'{"parameters": {',
        headers={**org.tokens["dev"], "content-type": "application/json"},
    )
    assert malformed.status_code == 400
    assert malformed.headers["content-type"].startswith("application/problem+json")
    unknown_team = start(
        client, org, parameters={"name": "ok", "directory": "/tmp"}, requesting_team="nobody"
    )
    assert unknown_team.json()["errors"][0]["field"] == "body.requesting_team"
    assert run_count(db) == 0


def test_a_dry_run_renders_every_input_and_creates_nothing(
    client: Any, db: Database, settings: Settings, org: Org, tmp_path: Path
) -> None:
    register_template(client, org)
    started = start(
        client, org, parameters={"name": "ledger", "directory": str(tmp_path)}, dry_run=True
    )
    assert started.status_code == 201, started.text
    drain(db, settings)
    detail = client.get(f"/api/v1/runs/{started.json()['id']}", headers=org.tokens["dev"]).json()
    assert detail["status"] == "succeeded" and detail["dry_run"] is True
    assert detail["steps"][0]["status"] == "skipped"
    assert detail["steps"][0]["input"] == {"directory": str(tmp_path), "name": "ledger-README"}
    assert detail["ticket_id"] is None
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_is_undone_and_retried_through_the_api(
    client: Any, db: Database, settings: Settings, org: Org, tmp_path: Path
) -> None:
    blocker = tmp_path / "BLOCKER"
    blocker.write_text("x")
    definition = register_template(client, org)
    steps = definition["steps"] + [
        {"id": "last", "action": "apitest.blocked", "input": {"blocker": str(blocker)}}
    ]
    updated = client.put(
        "/api/v1/templates/files",
        json={k: definition[k] for k in ("title", "owner", "parameters", "output")}
        | {"steps": steps},
        headers=org.tokens["dev"],
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    out = tmp_path / "out"
    out.mkdir()
    run_id = start(client, org, parameters={"name": "ledger", "directory": str(out)}).json()["id"]
    drain(db, settings)
    failed = client.get(f"/api/v1/runs/{run_id}", headers=org.tokens["dev"]).json()
    assert failed["status"] == "failed" and failed["failed_step"] == "last"
    assert "blocked by BLOCKER" in failed["error"]
    assert [s["status"] for s in failed["steps"]] == ["compensated", "skipped", "failed"]
    assert list(out.iterdir()) == []

    refused = client.post(f"/api/v1/runs/{run_id}/retry", headers=org.tokens["outsider"])
    assert refused.status_code == 403
    blocker.unlink()
    retried = client.post(f"/api/v1/runs/{run_id}/retry", headers=org.tokens["dev"])
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    drain(db, settings)
    done = client.get(f"/api/v1/runs/{run_id}", headers=org.tokens["dev"]).json()
    assert done["status"] == "succeeded", done["error"]
    assert [p.name for p in out.iterdir()] == ["ledger-README"]
    again = client.post(f"/api/v1/runs/{run_id}/retry", headers=org.tokens["dev"])
    assert again.status_code == 409


def test_approval_by_the_wrong_person_is_refused_and_changes_nothing(
    client: Any, db: Database, settings: Settings, org: Org, tmp_path: Path
) -> None:
    register_template(client, org, extra="approval: team-lead")
    params = {"name": "ledger", "directory": str(tmp_path)}
    run = start(client, org, parameters=params).json()
    assert run["status"] == "awaiting_approval"
    assert run["awaiting"] == ["lead@example.com"]
    before = audit_count(db)
    for who in ("dev", "other", "outsider"):
        refused = client.post(f"/api/v1/runs/{run['id']}/approve", headers=org.tokens[who])
        assert refused.status_code == 403, who
        assert refused.json()["status"] == 403
    assert audit_count(db) == before
    unchanged = client.get(f"/api/v1/runs/{run['id']}", headers=org.tokens["dev"]).json()
    assert unchanged["status"] == "awaiting_approval" and unchanged["approver"] is None

    approved = client.post(
        f"/api/v1/runs/{run['id']}/approve", json={"reason": "fine"}, headers=org.tokens["lead"]
    )
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["approver"]) == (
        "queued",
        "lead@example.com",
    )
    drain(db, settings)
    assert client.get(f"/api/v1/runs/{run['id']}", headers=org.tokens["dev"]).json()["status"] == (
        "succeeded"
    )
    twice = client.post(f"/api/v1/runs/{run['id']}/approve", headers=org.tokens["lead"])
    assert twice.status_code == 409

    second = start(client, org, parameters=params).json()
    no_reason = client.post(f"/api/v1/runs/{second['id']}/reject", headers=org.tokens["lead"])
    assert no_reason.status_code == 422
    assert [e["field"] for e in no_reason.json()["errors"]] == ["body.reason"]
    blank = client.post(
        f"/api/v1/runs/{second['id']}/reject", json={"reason": "  "}, headers=org.tokens["lead"]
    )
    assert blank.status_code == 422
    assert [e["field"] for e in blank.json()["errors"]] == ["body.reason"]
    empty = client.post(f"/api/v1/runs/{second['id']}/reject", json={}, headers=org.tokens["lead"])
    assert [e["field"] for e in empty.json()["errors"]] == ["body.reason"]
    rejected = client.post(
        f"/api/v1/runs/{second['id']}/reject",
        json={"reason": "use the shared cluster"},
        headers=org.tokens["lead"],
    )
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["decision_reason"]) == (
        "rejected",
        "use the shared cluster",
    )


def test_secrets_are_revealed_once_to_the_requester_and_never_listed(
    client: Any, db: Database, settings: Settings, org: Org
) -> None:
    created = client.post(
        "/api/v1/templates",
        json={
            "name": "password",
            "title": "A password",
            "owner": "payments",
            "steps": [{"id": "pw", "action": "apitest.password", "input": {}}],
        },
        headers=org.tokens["dev"],
    )
    assert created.status_code == 201, created.text
    run = client.post("/api/v1/templates/password/runs", json={}, headers=org.tokens["dev"]).json()
    drain(db, settings)
    detail = client.get(f"/api/v1/runs/{run['id']}", headers=org.tokens["dev"])
    assert detail.json()["secrets"] == [{"name": "db_password", "revealed": False}]
    assert detail.json()["steps"][0]["output"] == {"password": "secret:db_password"}

    stranger = client.post(f"/api/v1/runs/{run['id']}/secrets/reveal", headers=org.tokens["other"])
    assert stranger.status_code == 403
    shown = client.post(f"/api/v1/runs/{run['id']}/secrets/reveal", headers=org.tokens["dev"])
    assert shown.status_code == 200
    assert shown.headers["cache-control"] == "no-store"
    password = shown.json()["secrets"]["db_password"]
    assert password.startswith("pw-")
    again = client.post(f"/api/v1/runs/{run['id']}/secrets/reveal", headers=org.tokens["dev"])
    assert again.status_code == 409
    after = client.get(f"/api/v1/runs/{run['id']}", headers=org.tokens["dev"]).text
    assert password not in after
    assert '"revealed":true' in after.replace(" ", "")


# -- templates ---------------------------------------------------------------------------------
def test_templates_are_registered_read_changed_and_deleted(
    client: Any, db: Database, org: Org
) -> None:
    created = register_template(client, org)
    assert (created["name"], created["owner"], created["version"]) == ("files", "payments", 1)
    read = client.get("/api/v1/templates/files", headers=org.tokens["outsider"]).json()
    assert read["parameters"]["properties"]["name"]["description"] == "A short name"
    assert [s["id"] for s in read["steps"]] == ["readme", "license"]
    listed = client.get("/api/v1/templates", headers=org.tokens["outsider"]).json()
    assert [t["name"] for t in listed["items"]] == ["files"]
    assert (
        client.get("/api/v1/templates?owner=search", headers=org.tokens["dev"]).json()["items"]
        == []
    )

    changed = client.put(
        "/api/v1/templates/files",
        json={"yaml": TEMPLATE_YAML.format(extra="").replace("Two files", "Files")},
        headers=org.tokens["dev"],
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    refused = client.put(
        "/api/v1/templates/files",
        json={"yaml": TEMPLATE_YAML.format(extra="")},
        headers=org.tokens["outsider"],
    )
    assert refused.status_code == 403
    assert client.delete("/api/v1/templates/files", headers=org.tokens["outsider"]).status_code == (
        403
    )
    assert client.delete("/api/v1/templates/files", headers=org.tokens["dev"]).status_code == 204
    assert client.get("/api/v1/templates/files", headers=org.tokens["dev"]).status_code == 404


def test_bad_templates_are_refused_naming_the_field(client: Any, db: Database, org: Org) -> None:
    def post(body: Any) -> Any:
        return client.post("/api/v1/templates", json=body, headers=org.tokens["dev"])

    unknown = post({"yaml": TEMPLATE_YAML.format(extra="").replace("apitest.file", "nope.nope")})
    assert unknown.status_code == 422
    fields = [e["field"] for e in unknown.json()["errors"]]
    assert "body.yaml.steps.0.action" in fields and "body.yaml.steps.1.action" in fields
    escape = post(
        {
            "name": "escape",
            "title": "Escape",
            "owner": "payments",
            "steps": [
                {
                    "id": "x",
                    "action": "apitest.file",
                    "input": {"directory": "${{ run.__class__ }}", "name": "x"},
                }
            ],
        }
    )
    assert escape.status_code == 422
    assert escape.json()["errors"][0]["field"] == "body.steps.0.input"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    bombed = post({"yaml": bomb})
    assert bombed.status_code == 422
    assert bombed.json()["errors"][0]["field"] == "body.yaml"
    both = post({"yaml": "name: x", "name": "x"})
    assert both.status_code == 422 and both.json()["errors"][0]["field"] == "body.name"
    typed = post({"name": "x", "steps": "not a list"})
    assert typed.status_code == 422 and typed.json()["errors"][0]["field"] == "body.steps"
    huge = client.post(
        "/api/v1/templates",
        content=orjson.dumps({"yaml": "#" * (4 * 1024 * 1024)}),
        headers={**org.tokens["dev"], "content-type": "application/json"},
    )
    assert huge.status_code == 413
    other_team = post({"yaml": TEMPLATE_YAML.format(extra="").replace("payments", "search")})
    assert other_team.status_code == 403
    with db.sessionmaker() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM selfservice_templates")) == 0


def test_actions_are_listed_with_their_schemas(client: Any, db: Database, org: Org) -> None:
    first = client.get("/api/v1/actions", params={"limit": 3}, headers=org.tokens["dev"]).json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    every: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/actions", params=params, headers=org.tokens["dev"]).json()
        every += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    by_name = {a["name"]: a for a in every}
    assert {"repo.create", "postgres.database", "access.grant", "apitest.file"} <= set(by_name)
    assert set(by_name["apitest.file"]["input"]["properties"]) == {"directory", "name"}
    assert by_name["apitest.file"]["output"]["properties"]["path"]["type"] == "string"


# -- access grants -----------------------------------------------------------------------------
def test_access_is_requested_decided_listed_and_revoked(
    client: Any, db: Database, org: Org
) -> None:
    with db.transaction() as session:
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(
                kind="resource", name="ledger-db", owner="payments", accountable=org.other.email
            ),
        )
    asked = client.post(
        "/api/v1/grants",
        json={"entity": "resource:default/ledger-db", "access": "read", "reason": "debugging"},
        headers=org.tokens["outsider"],
    )
    assert asked.status_code == 201, asked.text
    grant = asked.json()
    assert (grant["status"], grant["grantee_user"], grant["requested_by"]) == (
        "pending",
        "outsider@example.com",
        "outsider@example.com",
    )
    to_decide = client.get("/api/v1/grants?view=decide", headers=org.tokens["other"]).json()
    assert [g["id"] for g in to_decide["items"]] == [grant["id"]]
    assert client.get("/api/v1/grants?view=decide", headers=org.tokens["dev"]).json()["items"] == []
    mine = client.get("/api/v1/grants", headers=org.tokens["outsider"]).json()
    assert [g["id"] for g in mine["items"]] == [grant["id"]]

    wrong = client.post(f"/api/v1/grants/{grant['id']}/approve", headers=org.tokens["dev"])
    assert wrong.status_code == 403
    no_reason = client.post(
        f"/api/v1/grants/{grant['id']}/reject", json={}, headers=org.tokens["other"]
    )
    assert [e["field"] for e in no_reason.json()["errors"]] == ["body.reason"]
    approved = client.post(f"/api/v1/grants/{grant['id']}/approve", headers=org.tokens["other"])
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    assert approved.json()["approver"] == "other@example.com"

    stranger = client.post(f"/api/v1/grants/{grant['id']}/revoke", headers=org.tokens["dev"])
    assert stranger.status_code == 403
    revoked = client.post(
        f"/api/v1/grants/{grant['id']}/revoke",
        json={"reason": "done"},
        headers=org.tokens["outsider"],
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    history = client.get(
        "/api/v1/catalog/entities/resource/default/ledger-db/grants", headers=org.tokens["dev"]
    ).json()
    assert [(g["id"], g["status"], g["revoked_by"]) for g in history["items"]] == [
        (grant["id"], "revoked", "outsider@example.com")
    ]

    for body, field in (
        ({"entity": "resource:default/nope", "access": "read", "reason": "x"}, "body.entity"),
        ({"entity": "resource:default/ledger-db", "access": "root", "reason": "x"}, "body.access"),
        ({"entity": "resource:default/ledger-db", "access": "read"}, "body.reason"),
        (
            {
                "entity": "resource:default/ledger-db",
                "access": "read",
                "reason": "x",
                "grantee": {"user": "ghost@example.com"},
            },
            "body.grantee.user",
        ),
        (
            {
                "entity": "resource:default/ledger-db",
                "access": "read",
                "reason": "x",
                "expires_at": "2000-01-01T00:00:00Z",
            },
            "body.expires_at",
        ),
    ):
        refused = client.post("/api/v1/grants", json=body, headers=org.tokens["outsider"])
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == field
