"""Third parties add actions through the ``lamplighter.actions`` entry-point group."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from lamplighter.selfservice.actions import base
from lamplighter.selfservice.actions.base import Action, ActionInput, ActionOutput, StepContext


class GreetInput(ActionInput):
    who: str


class GreetOutput(ActionOutput):
    greeting: str


class GreetAction(Action):
    name = "example.greet"
    title = "Say hello"
    Input = GreetInput
    Output = GreetOutput

    def run(self, ctx: StepContext, data: Any) -> GreetOutput:
        return GreetOutput(greeting=f"hello {data.who}")

    def compensate(self, ctx: StepContext, data: Any, output: Any | None) -> None:
        return None


NOT_AN_ACTION = object()


def test_installed_actions_are_registered_and_broken_ones_are_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    here = __name__
    points = [
        EntryPoint("greet", f"{here}:GreetAction", base.ENTRY_POINT_GROUP),
        EntryPoint("missing", "lamplighter_no_such_package:Thing", base.ENTRY_POINT_GROUP),
        EntryPoint("odd", f"{here}:NOT_AN_ACTION", base.ENTRY_POINT_GROUP),
    ]
    asked: list[str] = []

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        asked.append(group)
        return points

    monkeypatch.setattr(base, "entry_points", fake_entry_points)
    monkeypatch.setattr(base, "ACTIONS", dict(base.ACTIONS))
    with caplog.at_level(logging.ERROR, logger="lamplighter.selfservice"):
        base.load_entry_points()
    assert asked == ["lamplighter.actions"]
    assert base.get("example.greet") is GreetAction
    assert GreetAction.schema()["input"]["required"] == ["who"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "missing" in messages and "odd" in messages
    with pytest.raises(base.ActionError, match="unknown action 'missing'"):
        base.get("missing")
