"""The error hierarchy every domain raises; one handler turns it into RFC 9457 problems.

LamplighterError
├── BadRequest            400  malformed input that is not a field error
├── Unauthorized          401  no or bad credentials
├── Forbidden             403  signed in, but not allowed
├── NotFound              404
├── Conflict              409  duplicate names, stale state
├── PayloadTooLarge       413
└── ValidationFailed      422  one or more fields are wrong (``errors[]`` names them)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One wrong field: a dotted location (``body.email``) and the reason in plain words."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        pointer = "#/" + "/".join(self.field.split(".")[1:]) if "." in self.field else "#/"
        return {"field": self.field, "pointer": pointer, "reason": self.reason}


class LamplighterError(Exception):
    status = 500
    slug = "internal-error"
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class BadRequest(LamplighterError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class Unauthorized(LamplighterError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"


class Forbidden(LamplighterError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class CsrfFailed(Forbidden):
    slug = "csrf-failed"
    title = "CSRF check failed"


class NotFound(LamplighterError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(LamplighterError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class TooManyRequests(LamplighterError):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests"


class PayloadTooLarge(LamplighterError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class ValidationFailed(LamplighterError):
    status = 422
    slug = "validation-failed"
    title = "Validation failed"

    @classmethod
    def one(cls, field: str, reason: str) -> ValidationFailed:
        return cls(f"{field}: {reason}", errors=[FieldError(field, reason)])


PROBLEM_TYPES: dict[str, str] = {
    cls.slug: cls.title
    for cls in (
        LamplighterError,
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        ValidationFailed,
        CsrfFailed,
        TooManyRequests,
    )
} | {
    "malformed-json": "Malformed JSON",
    "method-not-allowed": "Method not allowed",
    "unsupported-media-type": "Unsupported media type",
    "identity-provider-unavailable": "Identity provider unavailable",
    "database-unavailable": "Database unavailable",
    "invalid-alert": "Invalid alert",
    "link-expired": "Link expired",
    "channel-failed": "Notification channel failed",
}


def problem(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str | None = None,
    errors: list[FieldError] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Build an RFC 9457 problem document; ``type`` is a relative URI served at /problems/."""
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    if request_id:
        body["request_id"] = request_id
    return body
