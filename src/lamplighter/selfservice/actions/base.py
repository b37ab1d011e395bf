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
- **Ownership.** A step acts on behalf of its requester (``ctx.actor``), so it changes nothing
  the requester could not change by hand. An action declares it in :attr:`Action.ownership`:
  which inputs name a resource that exists before the run (and how its owner is found), and
  what it creates. Before changing an existing resource it did not create in the same run, it
  calls :meth:`StepContext.require_may_change` with the resource's catalog entity (owning team
  member, SRE or admin; anything not in the catalog is refused unless the requester is an SRE
  or admin); a name already taken by a resource it did not create is refused, never adopted.
- **Risk.** :attr:`Action.risk` is ``"low"`` or ``"high"`` (privileged: it reaches shared
  infrastructure, or calls out with what the author wrote). A template using a high-risk action
  is reviewed by the platform team before it can run, and :attr:`Action.min_approval` is the
  least approval every run of a template using the action waits for. An action that declares
  no risk is treated as high-risk.

Third-party actions register through the ``lamplighter.actions`` entry-point group: each entry
point names an :class:`Action` subclass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from lamplighter.catalog import service as catalog
from lamplighter.core.authz import PRIVILEGED, can_write_owned
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.errors import LamplighterError, NotFound, ValidationFailed
from lamplighter.core.settings import Settings
from lamplighter.selfservice.models import Approval

if TYPE_CHECKING:
    from lamplighter.catalog.models import Entity

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

    def created_by_this_run(self, mark: str | None) -> bool:
        """Whether a resource's ownership mark (a step's ``ctx.key``) is one of this run's."""
        return mark is not None and mark.startswith(f"run-{self.run_id}-")

    def require_may_change(
        self, target: Entity | str | None, *, field: str, what: str | None = None
    ) -> None:
        """Refuse (naming ``field``) unless the requester may change ``target``: the catalog
        entity (or reference) owning an existing resource. ``None`` (a resource no catalog
        entity owns) only SREs and admins may change.

        ``ctx.require_may_change("service:default/payments-api", field="clone_url")`` lets a
        member of payments-api's team through and refuses anyone else with
        ``clone_url: only members of the owning team … may change service:default/payments-api``.
        """
        if self.actor.role in PRIVILEGED:
            return  # SREs and admins may change anything; nothing to look up
        entity = target
        if isinstance(target, str):
            try:
                entity = catalog.get_by_ref(session=self.session, ref=target)
            except (NotFound, ValidationFailed):
                entity = None
        if entity is None or isinstance(entity, str):
            name = what or (target if isinstance(target, str) else "this resource")
            raise ActionError(
                f"{field}: {name} is not in the catalog, so no team is known to own it; only "
                "SREs and admins may change it (register it for your team first)",
                field=field,
            )
        if not can_write_owned(self.actor, entity.owner_team_id):
            raise ActionError(
                f"{field}: only members of the owning team, SREs and admins may change "
                f"{what or entity.ref} (owned by another team)",
                field=field,
            )


@dataclass(frozen=True)
class Unavailable:
    """Why an action cannot run in this installation, and the one setting that enables it."""

    reason: str  # "no PostgreSQL server is configured"
    setting: str  # "LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL"

    def __str__(self) -> str:
        return f"{self.reason}; set {self.setting} to enable it"


Risk = Literal["low", "high"]
APPROVAL_ORDER = (Approval.NONE, Approval.TEAM_LEAD, Approval.SRE)


@dataclass(frozen=True)
class Ownership:
    """How an action treats resources that exist before its run (see the module's rules).

    ``changes`` maps each input field that names an existing resource the action changes to how
    the resource's owner is found and checked; ``creates`` says what the action creates and how
    it refuses a name already taken. An action that only creates has an empty ``changes``::

        ownership = Ownership(
            changes={"clone_url": "the repository's catalog entity (component of that name), "
                     "unless repo.create made it in this run"},
            creates="",
        )
    """

    creates: str = ""
    changes: Mapping[str, str] = field(default_factory=dict)


class Action:
    """Subclass, set the class attributes, implement :meth:`run` and :meth:`compensate`."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    Input: ClassVar[type[ActionInput]]
    Output: ClassVar[type[ActionOutput]]
    # The trust contract (module docstring): every built-in declares all three.
    ownership: ClassVar[Ownership | None] = None
    risk: ClassVar[Risk | None] = None  # None: treated as "high"
    min_approval: ClassVar[Approval] = Approval.NONE

    # Said on the template's card and form when a step waits for someone's decision after
    # it ran (the access request's approver), e.g. "the resource's accountable person".
    decided_by: ClassVar[str | None] = None

    @classmethod
    def preflight(cls, settings: Settings, data: Mapping[str, Any] | None) -> Unavailable | None:
        """Whether this installation can run the action at all: a configured provider, a
        server. ``data`` is the step's rendered input when known (None on the template list).
        Cheap: it reads settings only; :meth:`reachable` is the deep check of a dry run."""
        return None

    def reachable(self, ctx: StepContext, data: Any) -> None:
        """A dry run's deep check that the provider answers; raise :class:`ActionError`."""

    def check(self, ctx: StepContext, data: Any) -> None:
        """Validate the input against the installation's state before the run is queued
        (references exist, names free); raise :class:`ActionError` naming the input field.
        Inputs that depend on an earlier step's output are placeholders here: skip them."""

    def awaiting(self, output: Any) -> str | None:
        """After :meth:`run` succeeded: what the run now waits for (a person's decision), or
        None. The run is then ``awaiting_decision`` until the decision resumes it."""
        return None

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
            "risk": risk_of(cls),
            "min_approval": cls.min_approval.value,
        }


def risk_of(action: type[Action]) -> Risk:
    """An action's risk; one that does not declare it is treated as privileged."""
    return action.risk or "high"


def strictest(*approvals: str | Approval) -> Approval:
    """The strictest of some approvals: ``strictest("none", "team-lead") == TEAM_LEAD``."""
    return max((Approval(a) for a in approvals), key=APPROVAL_ORDER.index, default=Approval.NONE)


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
