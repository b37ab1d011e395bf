"""The contract every action keeps, and the registry templates find actions in.

An action is one kind of step: ``repo.create``, ``postgres.database``, ``access.grant`` … It
declares its input and output as Pydantic models (their JSON Schemas are published by the API),
does its work in :meth:`Action.run` and undoes it in :meth:`Action.compensate`.

Rules every action keeps:

- **Idempotent per run and step.** ``ctx.key`` (``"run-<run id>-<step id>"``) names what a step
  creates, or is recorded beside it, so running a step twice (a worker killed after the side
  effect, before the commit) finds the first attempt's resource and returns the same output
  instead of creating another.
- **Compensate undoes exactly what run created**, given the run's output (None when run failed
  part-way: then undo whatever exists under ``ctx.key``), and succeeds when there is nothing left
  to undo. A resource that existed before the run (a name taken) is never touched: run refuses it
  with :class:`ActionError` before creating anything.
- **Secrets never leave through outputs, logs or errors.** A generated password goes through
  ``ctx.secret(name, value)``, which stores it encrypted and returns a reference for the output.
- **Errors are :class:`ActionError`** with a message a requester can act on; ``retryable=True``
  for outages (an unreachable provider), so the runner can retry before compensating.

Third-party actions register through the ``lamplighter.actions`` entry-point group: each entry
point names an :class:`Action` subclass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.errors import LamplighterError
from lamplighter.core.settings import Settings

log = logging.getLogger("lamplighter.selfservice")
ENTRY_POINT_GROUP = "lamplighter.actions"


class ActionError(Exception):
    """A step cannot be done: the message says why, in words the requester can act on."""

    def __init__(self, message: str, *, field: str | None = None, retryable: bool = False):
        super().__init__(message)
        self.field = field
        self.retryable = retryable


class ActionInput(BaseModel):
    """Base of every action's input: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ActionOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class StepContext:
    """What a step may use. ``session`` is the run's transaction: rows an action writes there
    (catalog entities, grants, tickets) commit or roll back with the step."""

    session: Session
    settings: Settings
    box: SecretBox
    actor: Actor  # the requester, on whose behalf the step acts
    run_id: int
    step_id: str
    requesting_team_id: int | None
    dry_run: bool = False
    logs: list[str] = field(default_factory=list)
    secret_sink: Callable[[str, str], str] | None = None

    @property
    def key(self) -> str:
        """Names (or marks) what this step creates, so a second attempt finds the first's."""
        return f"run-{self.run_id}-{self.step_id}"

    def log(self, line: str) -> None:
        """A line for the run page; never put a secret in it."""
        self.logs.append(line)

    def secret(self, name: str, value: str) -> str:
        """Store ``value`` encrypted; returns the reference to put in the output."""
        if self.secret_sink is None:
            raise RuntimeError("this context stores no secrets")
        return self.secret_sink(name, value)


class Action:
    """Subclass, set the class attributes, implement :meth:`run` and :meth:`compensate`."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    Input: ClassVar[type[ActionInput]]
    Output: ClassVar[type[ActionOutput]]

    def run(self, ctx: StepContext, data: Any) -> ActionOutput:
        raise NotImplementedError

    def compensate(self, ctx: StepContext, data: Any, output: Any | None) -> None:
        raise NotImplementedError

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "title": cls.title,
            "description": cls.description,
            "input": cls.Input.model_json_schema(),
            "output": cls.Output.model_json_schema(),
        }


ACTIONS: dict[str, type[Action]] = {}


def register(action: type[Action]) -> type[Action]:
    """Class decorator for built-in actions; entry points are loaded by :func:`load_entry_points`."""
    if action.name in ACTIONS and ACTIONS[action.name] is not action:
        raise ValueError(f"two actions are named {action.name!r}")
    ACTIONS[action.name] = action
    return action


@contextmanager
def registered(*actions: type[Action]) -> Iterator[None]:
    """Register ``actions`` for the block only (a test's own actions), then remove them.

    ``with registered(Echo): ...`` makes ``echo`` usable in templates inside the block and
    unknown again after it, so one test's actions never leak into another's registry.
    """
    added = [action for action in actions if ACTIONS.get(action.name) is not action]
    for action in added:
        register(action)
    try:
        yield
    finally:
        for action in added:
            if ACTIONS.get(action.name) is action:
                del ACTIONS[action.name]


def load_entry_points() -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            action = entry.load()
        except Exception:  # a broken plugin must not take the server down
            log.exception("action plugin %s could not be loaded", entry.name)
            continue
        if not (isinstance(action, type) and issubclass(action, Action)):
            log.error("action plugin %s is not an Action subclass", entry.name)
            continue
        register(action)


def get(name: str) -> type[Action]:
    try:
        return ACTIONS[name]
    except KeyError:
        known = ", ".join(sorted(ACTIONS)) or "none"
        raise ActionError(f"unknown action {name!r}; known actions: {known}") from None


_Model = TypeVar("_Model", bound=BaseModel)


def parse_model(model: type[_Model], value: Any) -> _Model:
    """The engine hands over validated models; a plain dict (a stored output) is validated here."""
    return value if isinstance(value, model) else model.model_validate(value)


def action_error_from(
    exc: LamplighterError, *, prefix: str = "", field: str | None = None
) -> ActionError:
    """A service's error in the words of the action's input: ``body.owner`` → ``entities.0.owner``."""
    if exc.errors:
        raw = exc.errors[0].field
        tail = raw.split(".", 1)[1] if raw.startswith("body.") else raw
        field = f"{prefix}{tail}"
        return ActionError(f"{field}: {exc.errors[0].reason}", field=field)
    return ActionError(exc.detail, field=field)
