"""Who is acting and on behalf of which request: carried to the audit log and the logs."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """The principal behind a change: a user (by session or token) or the system (a job, the CLI)."""

    kind: str  # "user" | "token" | "system"
    label: str
    user_id: int | None = None
    token_id: int | None = None
    role: str = "viewer"
    team_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def audit_id(self) -> str | None:
        if self.kind == "token":
            return f"token:{self.token_id}"
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return None

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(kind="system", label=label, role="admin")


@dataclass
class RequestInfo:
    request_id: str | None = None
    client_addr: str | None = None


request_info: ContextVar[RequestInfo] = ContextVar("request_info", default=RequestInfo())  # noqa: B039
