"""Templates: parsing, validation naming every wrong field, sandboxed expressions, directory sync."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.errors import Conflict, Forbidden, ValidationFailed
from lamplighter.core.models import AuditEntry
from lamplighter.selfservice import expressions, templates
from lamplighter.selfservice.actions.base import (
    Action,
    ActionInput,
    ActionOutput,
    StepContext,
    registered,
)
from tests.conftest import SYSTEM, make_team, make_user


class EchoInput(ActionInput):
    text: str = ""
    count: int = 0


class EchoOutput(ActionOutput):
    text: str


class Echo(Action):
    """Returns its input text; does nothing else (validation tests only need a known action)."""

    name = "test.echo"
    title = "Echo"
    Input = EchoInput
    Output = EchoOutput
    risk = "low"  # changes nothing: a member's template using it publishes directly

    def run(self, ctx: StepContext, data: EchoInput) -> EchoOutput:
        return EchoOutput(text=data.text)

    def compensate(self, ctx: StepContext, data: EchoInput, output: Any) -> None:
        return None


@pytest.fixture(autouse=True)
def _test_actions() -> Iterator[None]:
    """This module's own actions, known to the registry only while its tests run."""
    with registered(Echo):
        yield


def definition(owner: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "hello-service",
        "title": "Hello service",
        "description": "Says hello.",
        "owner": owner,
        "parameters": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
        },
        "steps": [
            {"id": "greet", "action": "test.echo", "input": {"text": "hi ${{ parameters.name }}"}},
            {
                "id": "again",
                "action": "test.echo",
                "if": "${{ parameters.count > 0 }}",
                "input": {"text": "${{ steps.greet.output.text }}"},
            },
        ],
        "output": {"links": [{"title": "Greeting", "url": "${{ steps.greet.output.text }}"}]},
    }
    return base | changes


def admin_actor() -> Actor:
    return Actor(kind="user", label="admin@example.com", user_id=None, role="admin")


YAML = """
name: pg-for-service
title: PostgreSQL database
owner: {owner}
approval: sre
request_type: other
allowed_teams: [{owner}]
parameters:
  type: object
  required: [service]
  properties:
    service: {{type: string, description: The service that owns it}}
    size: {{type: integer, default: 10}}
steps:
  - id: db
    action: test.echo
    input:
      text: "${{{{ parameters.service }}}}-db"
      count: ${{{{ parameters.size }}}}
output:
  links:
    - title: Database
      url: "${{{{ steps.db.output.text }}}}"
"""


def test_a_yaml_template_is_stored_with_its_policy(db: Database) -> None:
    team = make_team(db, slug="platform")
    with db.transaction() as session:
        spec = templates.parse_yaml(YAML.format(owner=team.slug))
        template = templates.create(session=session, actor=SYSTEM, definition=spec)
    with db.transaction() as session:
        stored = templates.get(session=session, name="pg-for-service")
        assert stored.id == template.id
        assert stored.owner_team_id == team.id
        assert stored.approval == "sre"
        assert stored.allowed_teams == ["platform"]
        assert stored.request_type == "other"
        assert stored.version == 1
        assert stored.spec["steps"][0]["input"]["count"] == "${{ parameters.size }}"
        assert [t.name for t in templates.list_(session=session)] == ["pg-for-service"]


def test_whole_expressions_keep_their_type_and_text_is_interpolated() -> None:
    context = expressions.expression_context(
        {"n": 3, "tags": ["a", "b"], "name": "pay"}, {"repo": {"url": "file:///r"}}, {"id": 7}
    )
    rendered = expressions.render(
        {
            "n": "${{ parameters.n }}",
            "tags": "${{ parameters.tags }}",
            "label": "svc-${{ parameters.name }}-${{ parameters.n * 2 }}",
            "copier": "{{ project_name }} stays for copier",
            "output": "${{ steps.repo.output }}",
            "run": "run-${{ run.id }}",
        },
        context,
        where="steps.x.input",
    )
    assert rendered == {
        "n": 3,
        "tags": ["a", "b"],
        "label": "svc-pay-6",
        "copier": "{{ project_name }} stays for copier",
        "output": {"url": "file:///r"},
        "run": "run-7",
    }


def test_a_missing_parameter_names_the_place_and_the_expression() -> None:
    context = expressions.expression_context({"name": "pay"}, {"repo": {"url": "u"}}, {})
    with pytest.raises(expressions.ExpressionError) as caught:
        expressions.render({"name": "${{ parameters.nope }}"}, context, where="steps.db.input")
    assert caught.value.detail == (
        "steps.db.input.name: ${{ parameters.nope }} is undefined: "
        "there is no parameter 'nope' (parameters: name)"
    )
    with pytest.raises(expressions.ExpressionError) as caught:
        expressions.render(
            {"url": "${{ steps.repo.output.link }}"}, context, where="steps.db.input"
        )
    assert "the output of step 'repo' has no field 'link' (fields: url)" in caught.value.detail
    with pytest.raises(expressions.ExpressionError) as caught:
        expressions.render({"url": "${{ steps.gone.output.url }}"}, context, where="steps.db.input")
    assert "step 'gone' has no output" in caught.value.detail


def test_every_problem_is_reported_at_once_naming_its_field(db: Database) -> None:
    make_team(db, slug="platform")
    bad = definition(
        "nobody",
        approval="someone",
        request_type="no-such-type",
        parameters={"type": "object", "properties": {"name": {"type": "strin"}}},
        steps=[
            {"id": "greet", "action": "test.echo", "input": {"colour": "red"}},
            {"id": "greet", "action": "no.such.action", "input": {}},
            {"id": "late", "action": "test.echo", "input": {"text": "${{ steps.later.output }}"}},
        ],
    )
    with db.transaction() as session, pytest.raises(ValidationFailed) as caught:
        templates.validate(session=session, definition=bad)
    fields = {error.field: error.reason for error in caught.value.errors}
    assert "no team 'nobody'" in fields["owner"]
    assert "approval" in fields
    assert "no-such-type" in fields["request_type"]
    assert "parameters.properties.name.type" in fields
    assert "two steps" in fields["steps.1.id"]
    assert "unknown action 'no.such.action'" in fields["steps.1.action"]
    assert "not an earlier step" in fields["steps.2.input"]
    assert "test.echo has no input 'colour'" in fields["steps.0.input.colour"]


def test_a_template_without_steps_is_refused(db: Database) -> None:
    make_team(db, slug="platform")
    with db.transaction() as session, pytest.raises(ValidationFailed) as caught:
        templates.validate(session=session, definition=definition("platform", steps=[]))
    assert caught.value.errors[0].field == "steps"


@pytest.mark.parametrize(
    "expression",
    [
        "parameters.__class__",
        "parameters.name.__class__.__mro__",
        "run.__init__.__globals__",
        "parameters.__class__.__subclasses__()",
        "parameters.items.mro",
        "cycler.__init__.__globals__",
    ],
)
def test_expressions_reaching_for_python_internals_are_refused_on_save(
    db: Database, expression: str
) -> None:
    make_team(db, slug="platform")
    bad = definition(
        "platform",
        steps=[{"id": "x", "action": "test.echo", "input": {"text": f"${{{{ {expression} }}}}"}}],
    )
    with db.transaction() as session, pytest.raises(ValidationFailed) as caught:
        templates.validate(session=session, definition=bad)
    assert caught.value.errors[0].field == "steps.0.input"
    assert "may only read parameters, steps and run" in caught.value.errors[0].reason


def test_the_sandbox_refuses_an_escape_built_at_run_time() -> None:
    # No "__" in the text: only the sandbox, at evaluation, stands in the way.
    sneaky = "parameters['_' ~ '_class_' ~ '_']"
    assert expressions.check_expression(sneaky) is None
    with pytest.raises(expressions.ExpressionError) as caught:
        expressions.evaluate(sneaky, expressions.expression_context({}, {}, {}), where="steps.x.if")
    assert "steps.x.if" in caught.value.detail
    assert "refused by the sandbox: access to attribute '__class__'" in caught.value.detail


def test_a_yaml_bomb_is_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    with pytest.raises(ValidationFailed) as caught:
        templates.parse_yaml(bomb)
    assert caught.value.errors[0].field == "file"
    assert "aliases" in caught.value.errors[0].reason or "nodes" in caught.value.errors[0].reason


def test_only_the_owning_team_sres_and_admins_change_a_template(db: Database) -> None:
    member = make_user(db)
    outsider = make_user(db)
    viewer = make_user(db, role="viewer")
    team = make_team(db, slug="platform", members=[member])
    as_member = Actor(
        kind="user", label="m", user_id=member.id, team_ids=frozenset({team.id}), role="member"
    )
    as_outsider = Actor(kind="user", label="o", user_id=outsider.id, role="member")
    as_viewer = Actor(
        kind="user", label="v", user_id=viewer.id, team_ids=frozenset({team.id}), role="viewer"
    )
    with db.transaction() as session, pytest.raises(Forbidden):
        templates.create(session=session, actor=as_outsider, definition=definition("platform"))
    with db.transaction() as session, pytest.raises(Forbidden):
        templates.create(session=session, actor=as_viewer, definition=definition("platform"))
    with db.transaction() as session:
        templates.create(session=session, actor=as_member, definition=definition("platform"))
    with db.transaction() as session, pytest.raises(Conflict):
        templates.create(session=session, actor=as_member, definition=definition("platform"))
    with db.transaction() as session, pytest.raises(Forbidden):
        templates.update(
            session=session,
            actor=as_outsider,
            name="hello-service",
            definition=definition("platform", title="Taken over"),
        )
    with db.transaction() as session:
        updated = templates.update(
            session=session,
            actor=as_member,
            name="hello-service",
            definition=definition("platform", title="Hello, again"),
        )
        assert (updated.title, updated.version) == ("Hello, again", 2)
    with db.transaction() as session:
        templates.delete(session=session, actor=admin_actor(), name="hello-service")
    with db.transaction() as session:
        assert templates.get_by_name(session=session, name="hello-service") is None
        actions = list(
            session.scalars(
                sa.select(AuditEntry.action)
                .where(AuditEntry.object_type == templates.OBJECT_TYPE)
                .order_by(AuditEntry.id)
            )
        )
    assert actions == [
        "selfservice.template.create",
        "selfservice.template.update",
        "selfservice.template.delete",
    ]


def test_a_directory_sync_creates_updates_and_names_each_bad_file(
    db: Database, tmp_path: Path
) -> None:
    make_team(db, slug="platform")
    (tmp_path / "pg.yaml").write_text(YAML.format(owner="platform"))
    (tmp_path / "broken.yaml").write_text(
        "name: broken\ntitle: Broken\nowner: platform\nsteps:\n"
        "  - {id: one, action: no.such.action}\n"
    )
    (tmp_path / "notes.txt").write_text("not a template")
    with db.transaction() as session:
        first = templates.sync_directory(session=session, actor=SYSTEM, path=tmp_path)
    assert first.created == ["pg-for-service"]
    assert [e.field for e in first.errors] == ["broken.yaml: steps.0.action"]

    (tmp_path / "pg.yaml").write_text(
        YAML.format(owner="platform").replace("PostgreSQL database", "PostgreSQL, managed")
    )
    with db.transaction() as session:
        second = templates.sync_directory(session=session, actor=SYSTEM, path=tmp_path)
        stored = templates.get(session=session, name="pg-for-service")
        assert (stored.title, stored.version, stored.source) == ("PostgreSQL, managed", 2, "file")
        assert stored.source_path == str(tmp_path / "pg.yaml")
    assert second.updated == ["pg-for-service"]
    with db.transaction() as session:
        third = templates.sync_directory(session=session, actor=SYSTEM, path=tmp_path)
    assert third.unchanged == ["pg-for-service"]
