"""The self-service pages, driven like a browser without JavaScript (plus the HTMX fragment):
the template list, a form drawn from a parameters schema, a run followed to the end, approvals,
secrets shown once and access grants."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.catalog import service as catalog
from lamplighter.core.db import Database
from lamplighter.core.errors import ValidationFailed
from lamplighter.core.models import Team, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice import forms, golden, grants, templates
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    registered,
)
from lamplighter.selfservice.models import Run
from tests.conftest import SYSTEM, make_team
from tests.helpers import HTMX, drain, person, sign_in, text

FAIL_ONCE: set[str] = set()  # texts the echo action refuses once


class EchoInput(ActionInput):
    text: str
    size: int = 0


class EchoOutput(ActionOutput):
    text: str


class Echo(Action):
    name = "pagetest.echo"
    title = "Echo a text"
    Input = EchoInput
    Output = EchoOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: EchoInput) -> EchoOutput:
        if data.text in FAIL_ONCE:
            FAIL_ONCE.discard(data.text)
            raise ActionError(f"the echo server refused {data.text!r}")
        ctx.log(f"echoed {data.text} ({data.size})")
        return EchoOutput(text=data.text)

    def compensate(self, ctx: StepContext, data: EchoInput, output: Any) -> None:
        return None


class NoInput(ActionInput):
    pass


class PasswordOutput(ActionOutput):
    password: str


class MakePassword(Action):
    name = "pagetest.password"
    title = "Generate a password"
    Input = NoInput
    Output = PasswordOutput
    risk = "low"  # a test double: members' templates using it publish directly

    def run(self, ctx: StepContext, data: NoInput) -> PasswordOutput:
        return PasswordOutput(password=ctx.secret("db_password", "pw-" + secrets.token_hex(8)))

    def compensate(self, ctx: StepContext, data: NoInput, output: Any) -> None:
        return None


@pytest.fixture(autouse=True)
def _test_actions() -> Iterator[None]:
    """This module's own actions, known to the registry only while its tests run."""
    with registered(Echo, MakePassword):
        yield


SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "title": "Service name",
            "description": "Lowercase letters and dashes; it names the repository.",
            "pattern": "^[a-z][a-z-]+$",
            "maxLength": 40,
        },
        "size": {"type": "integer", "title": "Size", "minimum": 1, "maximum": 10, "default": 3},
        "flavour": {"type": "string", "enum": ["small", "large"], "default": "small"},
        "public": {"type": "boolean", "title": "Public", "description": "Anyone may read it."},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Free labels."},
    },
}


def make_template(db: Database, owner: Team, **extra: Any) -> str:
    definition: dict[str, Any] = {
        "name": extra.pop("name", "echo-service"),
        "title": extra.pop("title", "Echo service"),
        "description": extra.pop("description", "Says what you ask it to say."),
        "owner": owner.slug,
        "parameters": extra.pop("parameters", SCHEMA),
        "steps": extra.pop(
            "steps",
            [
                {
                    "id": "hello",
                    "title": "Say hello",
                    "action": "pagetest.echo",
                    "input": {
                        "text": "hello ${{ parameters.name }}",
                        "size": "${{ parameters.size }}",
                    },
                }
            ],
        ),
        **extra,
    }
    with db.transaction() as session:
        return templates.create(session=session, actor=SYSTEM, definition=definition).name


def run_count(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(Run)) or 0)


def member_of(db: Database, slug: str = "payments") -> tuple[User, Team]:
    user = person(db)
    team = make_team(db, slug=slug, members=[user])
    return user, team


def submit(client: TestClient, csrf: str, template: str, **fields: Any) -> Any:
    data = {"csrf_token": csrf, "mode": fields.pop("mode", "run")}
    data |= {f"param.{k}": v for k, v in fields.items()}
    return client.post(f"/selfservice/templates/{template}", data=data, follow_redirects=False)


def field_block(page: str, name: str) -> str:
    """The HTML of one form field's wrapper (label, help, error and input)."""
    match = re.search(
        rf'<div class="field[^"]*">(?:(?!<div class="field).)*?name="param\.{name}".*?</div>',
        page,
        re.DOTALL,
    )
    assert match, f"no field {name}"
    return match.group(0)


# -- tests -------------------------------------------------------------------------------------
def test_anonymous_visitors_are_sent_to_sign_in(client: TestClient, db: Database) -> None:
    for path in ["/selfservice", "/selfservice/templates/x", "/selfservice/runs/1"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


def test_list_shows_templates_with_owner_and_approval_and_escapes_markup(
    client: TestClient, db: Database
) -> None:
    user, team = member_of(db)
    make_template(db, team, title="<script>alert(1)</script> Echo", approval="sre")
    other = make_team(db, slug="ledger")
    make_template(db, other, name="ledger-only", title="Ledger only", allowed_teams=["ledger"])
    sign_in(client, user)
    page = client.get("/selfservice")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Echo" in page.text
    seen = text(page)
    assert "Says what you ask it to say." in seen and "An SRE approves" in seen
    assert "Payments" in seen  # the owning team
    assert "Ledger only" not in seen and "1 more template is only for other teams" in seen
    found = client.get("/selfservice", params={"q": "nothing-like-it"}, headers=HTMX)
    assert "No template matches" in text(found) and "<html" not in found.text


def test_form_draws_each_parameter_with_help_required_marks_and_limits(
    client: TestClient, db: Database
) -> None:
    user, team = member_of(db)
    make_template(db, team)
    sign_in(client, user)
    page = client.get("/selfservice/templates/echo-service").text
    name = field_block(page, "name")
    assert "Service name" in name and "it names the repository" in name
    assert "ss-required" in name and " required" in name
    assert 'pattern="^[a-z][a-z-]+$"' in name and 'maxlength="40"' in name
    size = field_block(page, "size")
    assert 'type="number"' in size and 'min="1"' in size and 'max="10"' in size
    assert 'value="3"' in size and "(optional)" in size
    assert '<option value="large">' in field_block(page, "flavour")
    assert 'type="checkbox"' in page and "Anyone may read it." in page
    assert 'name="param.tags"' in page and "One per line." in page
    assert '<option value="payments" selected>' in page
    assert 'value="dry-run"' in page and ">Dry run</button>" in page
    assert 'value="run"' in page


def test_a_bad_value_comes_back_next_to_its_field_and_nothing_is_created(
    client: TestClient, db: Database
) -> None:
    user, team = member_of(db)
    make_template(db, team)
    csrf = sign_in(client, user)
    response = submit(client, csrf, "echo-service", name="Bad Name!", size="2", tags="a\nb")
    assert response.status_code == 422
    name = field_block(response.text, "name")
    # In words, not the regular expression the schema holds.
    assert "field-error" in name and "is not in the expected form" in name
    assert "does not match" not in name
    assert 'value="Bad Name!"' in name  # what was typed stays
    assert "a\nb" in response.text
    assert run_count(db) == 0
    words = submit(client, csrf, "echo-service", name="pay", size="many")
    assert words.status_code == 422 and "enter a number" in field_block(words.text, "size")
    big = submit(client, csrf, "echo-service", name="pay", size="11")
    assert big.status_code == 422 and "must be at most 10" in field_block(big.text, "size")
    missing = submit(client, csrf, "echo-service", name="")
    assert missing.status_code == 422 and "is required" in field_block(missing.text, "name")
    assert run_count(db) == 0


def test_a_run_is_followed_live_until_its_steps_succeed(
    client: TestClient, db: Database, settings: Settings
) -> None:
    user, team = member_of(db)
    make_template(db, team, request_type="other")
    csrf = sign_in(client, user)
    response = submit(client, csrf, "echo-service", name="pay", size="4", public="on")
    assert response.status_code == 303
    location = response.headers["location"]
    assert re.fullmatch(r"/selfservice/runs/\d+", location)
    page = client.get(location)
    assert f'hx-get="{location}/live"' in page.text and 'hx-trigger="every 1s"' in page.text
    assert "Queued" in text(page) and "Run" in text(page) and "started" in text(page)
    assert "Say hello" in text(page) and "Pending" in text(page)

    drain(db, settings)  # the worker: it could as well run in another process

    live = client.get(f"{location}/live", headers=HTMX)
    assert live.status_code == 200 and "<html" not in live.text
    assert "hx-trigger" not in live.text, "a finished run stops polling"
    seen = text(live)
    assert "Succeeded" in seen and "Every step succeeded." in seen
    assert "echoed hello pay (4)" in seen  # the step's log
    assert '"text": "hello pay"' in live.text.replace("&#34;", '"')  # its rendered input
    assert re.search(r'href="/tickets/\d+">ticket #\d+</a>', live.text)
    mine = client.get("/selfservice/runs")
    assert location in mine.text and "Succeeded" in text(mine)


def test_a_dry_run_shows_inputs_and_does_nothing(
    client: TestClient, db: Database, settings: Settings
) -> None:
    user, team = member_of(db)
    make_template(db, team, approval="sre")
    csrf = sign_in(client, user)
    response = submit(client, csrf, "echo-service", name="pay", mode="dry-run")
    assert response.status_code == 303
    drain(db, settings)
    page = client.get(response.headers["location"])
    assert "Dry run" in text(page) and "nothing was done" in text(page)
    assert "hello pay" in page.text and "ticket #" not in page.text


def test_only_the_approver_sees_the_buttons_and_may_decide(
    client: TestClient, app: Any, db: Database
) -> None:
    user, team = member_of(db)
    make_template(db, team, approval="sre")
    sre = person(db, role="sre")
    stranger = person(db)
    csrf = sign_in(client, user)
    response = submit(client, csrf, "echo-service", name="pay")
    location = response.headers["location"]
    run_id = int(location.rsplit("/", 1)[1])
    page = client.get(location)
    assert "Awaiting approval" in text(page) and ">Approve</button>" not in page.text
    assert 'hx-trigger="every 1s"' not in page.text

    csrf = sign_in(client, stranger)
    refused = client.post(f"{location}/approve", data={"csrf_token": csrf})
    assert refused.status_code == 403
    assert ">Approve</button>" not in client.get(location).text

    csrf = sign_in(client, sre)
    assert ">Approve</button>" in client.get(location).text
    assert f"/selfservice/runs/{run_id}" in client.get("/selfservice/runs").text
    no_reason = client.post(f"{location}/reject", data={"csrf_token": csrf, "reason": " "})
    assert no_reason.status_code == 422 and "say why the run is rejected" in no_reason.text
    approved = client.post(f"{location}/approve", data={"csrf_token": csrf}, follow_redirects=False)
    assert approved.status_code == 303
    after = client.get(location)
    assert "Queued" in text(after) and "approved" in text(after)
    assert ">Approve</button>" not in after.text


def test_a_failed_run_is_retried_by_its_requester(
    client: TestClient, db: Database, settings: Settings
) -> None:
    user, team = member_of(db)
    make_template(db, team)
    stranger = person(db)
    FAIL_ONCE.add("hello pay")
    csrf = sign_in(client, user)
    location = submit(client, csrf, "echo-service", name="pay").headers["location"]
    drain(db, settings)
    page = client.get(location)
    assert "Failed" in text(page) and "the echo server refused 'hello pay'" in text(page)
    assert 'hx-trigger="every 1s"' not in page.text
    assert "Retry from the failed step" in page.text

    sign_in(client, stranger)
    assert "Retry from the failed step" not in client.get(location).text
    csrf = sign_in(client, user)
    retried = client.post(f"{location}/retry", data={"csrf_token": csrf}, follow_redirects=False)
    assert retried.status_code == 303
    assert 'hx-trigger="every 1s"' in client.get(location).text
    drain(db, settings)
    assert "Every step succeeded." in text(client.get(location))


def test_secrets_are_shown_once(client: TestClient, db: Database, settings: Settings) -> None:
    user, team = member_of(db)
    make_template(
        db,
        team,
        parameters={"type": "object", "properties": {}},
        steps=[{"id": "db", "action": "pagetest.password", "input": {}}],
    )
    csrf = sign_in(client, user)
    location = submit(client, csrf, "echo-service").headers["location"]
    drain(db, settings)
    page = client.get(location)
    assert "Show the secrets once" in page.text and "pw-" not in page.text
    shown = client.post(f"{location}/secrets", data={"csrf_token": csrf})
    assert shown.status_code == 200
    assert re.search(r"pw-[0-9a-f]{16}", shown.text)
    assert "will not be shown again" in text(shown)
    assert shown.headers["cache-control"] == "no-store"
    again = client.post(f"{location}/secrets", data={"csrf_token": csrf})
    assert again.status_code == 409 and "shown once already" in text(again)
    assert "pw-" not in again.text
    assert "were shown once already" in text(client.get(location))


def test_access_is_asked_for_through_one_form_and_the_run_ends_with_the_decision(
    client: TestClient, db: Database, settings: Settings
) -> None:
    owner = person(db)
    make_team(db, slug="data", lead=owner)
    with db.transaction() as session:
        golden.load_golden(session=session, actor=SYSTEM, settings=settings)
        catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(kind="resource", name="orders-db", owner="data"),
        )
    asker = person(db)
    csrf = sign_in(client, asker)
    # The access page has no form of its own: it leads to the access golden path.
    page = client.get("/selfservice/access")
    assert 'href="/selfservice/templates/access"' in page.text
    assert 'action="/selfservice/access"' not in page.text
    # Linked from an entity page, the form comes filled in.
    form = client.get("/selfservice/templates/access?entity=resource:default/orders-db")
    assert 'value="resource:default/orders-db"' in field_block(form.text, "entity")
    # The card says who decides rather than "No approval" alone.
    assert "accountable person" in text(client.get("/selfservice"))

    def ask(entity: str) -> Any:
        return client.post(
            "/selfservice/templates/access",
            data={
                "csrf_token": csrf,
                "param.entity": entity,
                "param.access": "read",
                "param.reason": "reports",
                "param.duration_days": "7",
            },
            follow_redirects=False,
        )

    unknown = ask("orders-dbb")
    assert unknown.status_code == 422
    assert "no catalog entity" in field_block(unknown.text, "entity")
    assert run_count(db) == 0  # checked before anything is queued
    asked = ask("orders-db")  # a bare name, unique across kinds, is enough
    assert asked.status_code == 303, asked.text
    run_url = asked.headers["location"]
    drain(db, settings)
    waiting = client.get(run_url)
    assert "Awaiting decision" in text(waiting) and "Succeeded" not in text(waiting)
    assert "Pending" in text(client.get("/selfservice/access"))

    csrf = sign_in(client, owner)
    page = client.get("/selfservice/access")
    assert "Waiting for your decision" in text(page) and "reports" in text(page)
    with db.transaction() as session:
        grant_id = session.scalars(sa.select(grants.AccessGrant.id)).one()
    assert f'id="grant-{grant_id}"' in page.text  # where the decider's inbox link leads
    no_reason = client.post(f"/selfservice/access/{grant_id}/reject", data={"csrf_token": csrf})
    assert no_reason.status_code == 422 and "say why" in no_reason.text
    approved = client.post(
        f"/selfservice/access/{grant_id}/approve",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert approved.status_code == 303
    drain(db, settings)
    csrf = sign_in(client, asker)
    assert "Succeeded" in text(client.get(run_url))
    assert "Active" in text(client.get("/selfservice/access"))
    revoked = client.post(
        f"/selfservice/access/{grant_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert revoked.status_code == 303
    assert "Revoked" in text(client.get("/selfservice/access"))


def test_form_text_becomes_typed_parameters() -> None:
    schema = {
        "type": "object",
        "required": ["zones"],
        "properties": {
            "replicas": {"type": "integer", "enum": [1, 3, 5]},
            "ratio": {"type": "number"},
            "zones": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}},
            "names": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object"},
            "public": {"type": "boolean"},
            "note": {"type": "string", "default": "none"},
        },
    }
    fields = forms.fields_of(schema)
    widgets = {f.name: f.widget for f in fields}
    assert widgets == {
        "replicas": "select",
        "ratio": "number",
        "zones": "checkboxes",
        "names": "lines",
        "labels": "json",
        "public": "checkbox",
        "note": "text",
    }
    sent = {
        "param.replicas": ["3"],
        "param.ratio": ["0.5"],
        "param.zones": ["a", "c"],
        "param.names": ["one\n\n two \n"],
        "param.labels": ['{"tier": 1}'],
        "param.note": [""],
    }
    assert forms.read(fields, schema, sent) == {
        "replicas": 3,
        "ratio": 0.5,
        "zones": ["a", "c"],
        "names": ["one", "two"],
        "labels": {"tier": 1},
        "public": False,
    }
    assert forms.echo(fields, sent)["zones"] == "a\nc"
    for name, value, reason in [
        ("replicas", "4", "choose one of the listed values"),
        ("ratio", "inf", "enter a number"),
        ("labels", "{oops", "enter a JSON value"),
    ]:
        try:
            forms.read(fields, schema, {f"param.{name}": [value]})
        except ValidationFailed as exc:
            assert exc.errors[0].field == f"parameters.{name}" and exc.errors[0].reason == reason
        else:
            raise AssertionError(f"{name}={value!r} was accepted")


def test_every_page_has_one_title_and_labelled_inputs(
    client: TestClient, db: Database, settings: Settings
) -> None:
    user, team = member_of(db)
    make_template(db, team)
    csrf = sign_in(client, user)
    run = submit(client, csrf, "echo-service", name="pay").headers["location"]
    for path in [
        "/selfservice",
        "/selfservice/templates/echo-service",
        run,
        "/selfservice/runs",
        "/selfservice/access",
    ]:
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.text.count("<h1") == 1, path
        assert 'aria-current="page">Self-service' in page.text, path
        inputs = re.findall(r'<(?:input|select|textarea) id="([^"]+)"', page.text)
        inputs += re.findall(r'<input type="checkbox" id="([^"]+)"', page.text)
        assert all(f'for="{i}"' in page.text for i in inputs), path
