"""A run's outputs are rendered once when it ends and stored; a link is an http(s) URL or a
path on this site, never ``//host``, ``/\\host``, ``javascript:`` or ``data:``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.core.db import Database
from lamplighter.core.models import User
from lamplighter.core.settings import Settings
from lamplighter.selfservice import expressions, runs, templates
from lamplighter.selfservice.actions.base import (
    Action,
    ActionInput,
    ActionOutput,
    StepContext,
    registered,
)
from lamplighter.selfservice.models import Run
from tests.conftest import SYSTEM, auth, make_team, make_token, make_user
from tests.helpers import drain


class UrlInput(ActionInput):
    url: str


class UrlOutput(ActionOutput):
    url: str


class GiveUrl(Action):
    """Returns the URL it is given, as a repository or dashboard action returns its link."""

    name = "test.give_url"
    title = "Give a URL"
    Input = UrlInput
    Output = UrlOutput

    def run(self, ctx: StepContext, data: UrlInput) -> UrlOutput:
        return UrlOutput(url=data.url)

    def compensate(self, ctx: StepContext, data: UrlInput, output: Any) -> None:
        return None


@pytest.fixture(autouse=True)
def _give_url() -> Iterator[None]:
    with registered(GiveUrl):
        yield


@pytest.fixture
def member(db: Database) -> User:
    user = make_user(db, email="dev@example.com")
    make_team(db, slug="payments", members=[user])
    return user


def run_with_links(
    client: TestClient, db: Database, settings: Settings, member: User, links: list[dict[str, str]]
) -> int:
    definition = {
        "name": "linky",
        "title": "Links",
        "owner": "payments",
        "parameters": {"type": "object", "properties": {"url": {"type": "string"}}},
        "steps": [
            {"id": "make", "action": "test.give_url", "input": {"url": "${{ parameters.url }}"}}
        ],
        "output": {"links": links},
    }
    with db.transaction() as session:
        if session.scalar(sa.select(sa.func.count()).select_from(Run)) == 0:
            templates.create(session=session, actor=SYSTEM, definition=definition)
    response = client.post(
        "/api/v1/templates/linky/runs",
        json={"parameters": {"url": "//evil.example.com/x"}},
        headers=auth(make_token(db, member)),
    )
    assert response.status_code == 201, response.text
    drain(db, settings)
    return int(response.json()["id"])


BAD = [
    "//evil.example.com/x",
    "/\\evil.example.com",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "java\tscript:alert(1)",
    "https:evil.example.com",
    "ftp://files.example.com/",
    "relative/path",
]
GOOD = ["https://git.example.com/payments/repo", "http://grafana.example.com/d/1", "/catalog/x"]


@pytest.mark.parametrize("url", BAD)
def test_a_link_off_site_or_to_a_script_is_refused(url: str) -> None:
    assert runs.link_problem(url) is not None


@pytest.mark.parametrize("url", GOOD)
def test_http_links_and_paths_on_this_site_are_kept(url: str) -> None:
    assert runs.link_problem(url) is None


def test_outputs_are_stored_when_the_run_ends_and_bad_links_left_out(
    client: TestClient, db: Database, settings: Settings, member: User
) -> None:
    run_id = run_with_links(
        client,
        db,
        settings,
        member,
        [
            {"title": "Made", "url": "${{ steps.make.output.url }}"},
            {"title": "Repo", "url": "https://git.example.com/payments/repo"},
        ],
    )
    with db.transaction() as session:
        run = runs.get(session=session, run_id=run_id)
        assert run.status == "succeeded"
        assert run.outputs is not None
        assert run.outputs["links"] == [
            {"title": "Repo", "url": "https://git.example.com/payments/repo"}
        ]
        assert run.outputs["error"].startswith("output.links.0.url: ")
        assert "another site" in run.outputs["error"]
    # Reading the run does not evaluate expressions again: it reads what was stored.
    with mock.patch.object(expressions, "evaluate", side_effect=AssertionError("evaluated")):
        answer = client.get(f"/api/v1/runs/{run_id}", headers=auth(make_token(db, member)))
    assert answer.status_code == 200
    assert answer.json()["outputs"]["links"] == [
        {"title": "Repo", "url": "https://git.example.com/payments/repo"}
    ]
    assert "evil.example.com" not in answer.json()["outputs"]["links"].__repr__()


def test_a_run_finished_before_outputs_were_stored_renders_them_within_bounds(
    client: TestClient, db: Database, settings: Settings, member: User
) -> None:
    run_id = run_with_links(
        client, db, settings, member, [{"title": "Big", "url": "/x/${{ 9**(9**7) }}"}]
    )
    with db.transaction() as session:
        run = runs.get(session=session, run_id=run_id)
        assert run.outputs is not None and run.outputs["links"] == []
        assert "over the bounds" in run.outputs["error"]
        run.outputs = None  # as a run that ended before outputs were stored
    with db.transaction() as session:
        run = runs.get(session=session, run_id=run_id)
        outputs = runs.rendered_outputs(session=session, run=run)
    assert outputs["links"] == [] and "over the bounds" in outputs["error"]
