"""Secret parameters (``format: password`` / ``writeOnly``): the action gets the value, nobody
else reads it: not the run API, the run page, the audit log, events, logs, errors or outputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core import identity
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry, Event, InboxItem, Job, Team, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice import runs, templates
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    registered,
)
from lamplighter.selfservice.models import Run, RunSecret, RunStep
from tests.conftest import SYSTEM, TEST_SECRET, auth, make_team, make_token, make_user
from tests.helpers import drain, person, sign_in

TOKEN = "tk-9f3Zq81/xy+w"  # a '/' and a '+' so its URL-encoded spelling differs
RECEIVED: list[dict[str, str]] = []  # the headers each call received, run and compensate alike


class CallInput(ActionInput):
    url: str
    headers: dict[str, str]
    fail: bool = False


class CallOutput(ActionOutput):
    echo: str


class FakeCall(Action):
    """Stands for ``http.request``: logs, echoes and fails with what it was given, as a careless
    API would (the masking must not rely on the action's care)."""

    name = "test.call"
    title = "Call"
    Input = CallInput
    Output = CallOutput

    def run(self, ctx: StepContext, data: CallInput) -> CallOutput:
        RECEIVED.append(dict(data.headers))
        ctx.log(f"GET {data.url} with Authorization: {data.headers['Authorization']}")
        if data.fail:
            raise ActionError(f"401 from {data.url}: bad credentials {data.headers}")
        return CallOutput(echo=data.headers["Authorization"])

    def compensate(self, ctx: StepContext, data: CallInput, output: Any) -> None:
        RECEIVED.append(dict(data.headers))


@pytest.fixture(autouse=True)
def _fake_call() -> Iterator[None]:
    RECEIVED.clear()
    with registered(FakeCall):
        yield


def make_template(db: Database, team: Team, *, fail: bool = False) -> None:
    definition = {
        "name": "call-api",
        "title": "Call the API",
        "owner": team.slug,
        "parameters": {
            "type": "object",
            "required": ["token"],
            "properties": {
                "token": {"type": "string", "format": "password", "pattern": "^[^ ]+$"},
                "auth": {
                    "type": "object",
                    "properties": {"key": {"type": "string", "writeOnly": True}},
                },
            },
        },
        "steps": [
            {
                "id": "first",
                "action": "test.call",
                "input": {
                    "url": "https://api.example.com/ok",
                    "headers": {"Authorization": "Bearer ${{ parameters.token }}"},
                },
            },
            {
                "id": "second",
                "action": "test.call",
                "input": {
                    "url": "https://api.example.com/ok?key=${{ parameters.auth.key }}",
                    "headers": {"Authorization": "${{ parameters.token }}"},
                    "fail": fail,
                },
            },
        ],
        "output": {
            "links": [
                {"title": "Echo", "url": "https://api.example.com/${{ steps.second.output.echo }}"}
            ]
        },
    }
    with db.transaction() as session:
        templates.create(session=session, actor=SYSTEM, definition=definition)


@pytest.fixture
def team(db: Database) -> Team:
    return make_team(db, slug="payments")


@pytest.fixture
def member(db: Database, team: Team) -> User:
    user = make_user(db, email="dev@example.com")
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug=team.slug, email=user.email)
    return user


def start_run(client: TestClient, db: Database, member: User) -> int:
    response = client.post(
        "/api/v1/templates/call-api/runs",
        json={"parameters": {"token": TOKEN, "auth": {"key": "k3y-Value"}}},
        headers=auth(make_token(db, member)),
    )
    assert response.status_code == 201, response.text
    assert TOKEN not in response.text
    return int(response.json()["id"])


def stored_text(db: Database, run_id: int) -> str:
    """Everything stored about the run except the encrypted secrets, as one text."""
    with db.transaction() as session:
        rows: list[Any] = [
            session.get(Run, run_id),
            *session.scalars(sa.select(RunStep).where(RunStep.run_id == run_id)),
            *session.scalars(sa.select(AuditEntry)),
            *session.scalars(sa.select(Event)),
            *session.scalars(sa.select(InboxItem)),
            *session.scalars(sa.select(Job)),
        ]
        return "\n".join(
            orjson.dumps(
                {c.key: getattr(row, c.key) for c in sa.inspect(row).mapper.column_attrs},
                default=str,
            ).decode()
            for row in rows
        )


def assert_hidden(text: str) -> None:
    for spelling in (TOKEN, "tk-9f3Zq81%2Fxy%2Bw", "k3y-Value"):
        assert spelling not in text


def test_a_secret_parameter_reaches_the_action_and_nobody_else(
    client: TestClient, db: Database, settings: Settings, team: Team, member: User
) -> None:
    make_template(db, team)
    run_id = start_run(client, db, member)
    drain(db, settings)

    # The action received the real value, in both steps.
    assert [{"Authorization": f"Bearer {TOKEN}"}, {"Authorization": TOKEN}] == RECEIVED
    # Stored encrypted, masked by value everywhere else.
    with db.transaction() as session:
        run = runs.get(session=session, run_id=run_id)
        assert run.status == "succeeded"
        assert run.parameters == {"token": "[secret]", "auth": {"key": "[secret]"}}
        steps = runs.steps_of(session=session, run_id=run_id)
        assert steps[0].input == {
            "url": "https://api.example.com/ok",
            "headers": {"Authorization": "Bearer [secret]"},
        }
        assert "Authorization: Bearer [secret]" in steps[0].log
        assert steps[1].input is not None and steps[1].input["url"].endswith("key=[secret]")
        assert steps[1].output == {"echo": "[secret]"}
        assert run.outputs is not None
        secrets = {
            s.name: s.ciphertext
            for s in session.scalars(sa.select(RunSecret).where(RunSecret.run_id == run_id))
        }
    assert set(secrets) == {"parameters.token", "parameters.auth.key"}
    assert SecretBox(TEST_SECRET.encode()).decrypt(secrets["parameters.token"]) == f'"{TOKEN}"'
    assert_hidden(stored_text(db, run_id))

    # A viewer reads the run through the API and the page; an admin reads the audit log.
    viewer = person(db, "viewer@example.com", role="viewer")
    answer = client.get(f"/api/v1/runs/{run_id}", headers=auth(make_token(db, viewer)))
    assert answer.status_code == 200
    assert "Bearer [secret]" in answer.text
    assert_hidden(answer.text)
    assert answer.json()["secrets"] == []  # the requester typed it: nothing to reveal
    sign_in(client, viewer)
    page = client.get(f"/selfservice/runs/{run_id}")
    assert page.status_code == 200 and "Bearer [secret]" in page.text
    assert_hidden(page.text)
    admin = person(db, "admin@example.com", role="admin")
    audit_log = client.get("/api/v1/audit?limit=200", headers=auth(make_token(db, admin)))
    assert audit_log.status_code == 200 and "selfservice.run.start" in audit_log.text
    assert_hidden(audit_log.text)
    sign_in(client, admin)
    assert_hidden(client.get("/audit").text)


def test_a_failing_step_masks_its_error_and_compensation_gets_the_real_value(
    client: TestClient, db: Database, settings: Settings, team: Team, member: User
) -> None:
    make_template(db, team, fail=True)
    run_id = start_run(client, db, member)
    drain(db, settings)

    with db.transaction() as session:
        run = runs.get(session=session, run_id=run_id)
        assert run.status == "failed"
        assert run.error is not None and "bad credentials" in run.error
        assert "[secret]" in run.error
    # run first, run second (fails), undo second, undo first: each with the real header
    assert [
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}"},
    ] == RECEIVED
    assert_hidden(stored_text(db, run_id))


def test_a_refused_secret_is_not_echoed_in_the_error(
    client: TestClient, db: Database, team: Team, member: User
) -> None:
    make_template(db, team)
    response = client.post(
        "/api/v1/templates/call-api/runs",
        json={"parameters": {"token": "has space"}},
        headers=auth(make_token(db, member)),
    )
    assert response.status_code == 422
    assert "has space" not in response.text and "[secret]" in response.text


def test_the_form_asks_for_a_secret_with_a_password_input(
    client: TestClient, db: Database, team: Team
) -> None:
    user = person(db, "former@example.com")
    with db.transaction() as session:
        identity.add_member(session=session, actor=SYSTEM, slug=team.slug, email=user.email)
    make_template(db, team)
    sign_in(client, user)
    page = client.get("/selfservice/templates/call-api").text
    assert 'name="param.token" type="password" value=""' in page
