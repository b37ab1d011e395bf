"""Names and references: Backstage's rules (`[kind:][namespace/]name`), case-insensitive."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lamplighter.core.errors import ValidationFailed

NAME_RE = re.compile(r"^[a-zA-Z0-9]+(?:[-_.][a-zA-Z0-9]+)*$")
OTHER_KIND_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")
TAG_RE = re.compile(r"^[a-z0-9:+#]+(?:-[a-z0-9:+#]+)*$")
KINDS = ("service", "api", "resource", "system", "domain", "platform")
# Backstage's kinds, as they appear in references, mapped to Lamplighter's.
KIND_ALIASES = {
    "component": "service",
    "service": "service",
    "api": "api",
    "resource": "resource",
    "system": "system",
    "domain": "domain",
    "platform": "platform",
    "group": "group",
    "user": "user",
}


@dataclass(frozen=True)
class Ref:
    kind: str
    namespace: str
    name: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace.lower(), self.name.lower())

    def __str__(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"


def check_name(value: str, field: str, what: str = "name") -> str:
    if not 1 <= len(value) <= 63 or not NAME_RE.match(value):
        raise ValidationFailed.one(
            field,
            f"{what} {value!r} must be 1-63 letters or digits separated by single '-', '_' or '.'",
        )
    return value


def check_tag(value: str, field: str) -> str:
    if not 1 <= len(value) <= 63 or not TAG_RE.match(value):
        raise ValidationFailed.one(
            field, f"tag {value!r} must be lowercase letters, digits, ':', '+' or '#' joined by '-'"
        )
    return value


def check_policy(
    kind: str, name: str, owner_slug: str, rules: Mapping[str, str] | None, field: str
) -> None:
    """Apply the organisation's extra naming rule for this kind, if any.

    A rule is a regular expression; ``{team}`` in it stands for the owning team's slug, so
    ``^{team}-`` makes resources start with their team's slug.
    """
    pattern = (rules or {}).get(kind)
    if not pattern:
        return
    compiled = pattern.replace("{team}", re.escape(owner_slug))
    if not re.search(compiled, name):
        raise ValidationFailed.one(
            field, f"{kind} names must match {pattern!r} (team {owner_slug!r}); {name!r} does not"
        )


def parse_ref(text: str, *, default_kind: str | None, default_namespace: str, field: str) -> Ref:
    """Parse ``[kind:][namespace/]name``; the kind may be left out only where it has a default."""
    raw = text.strip()
    kind: str | None = default_kind
    if ":" in raw:
        kind_part, raw = raw.split(":", 1)
        kind_part = kind_part.strip()
        kind = KIND_ALIASES.get(kind_part.lower())
        if kind is None and OTHER_KIND_RE.match(kind_part):
            kind = kind_part.lower()  # a kind Lamplighter keeps without modelling it
        if kind is None:
            raise ValidationFailed.one(
                field, f"kind {kind_part!r} in reference {text!r} is not a kind name"
            )
    if kind is None:
        raise ValidationFailed.one(
            field, f"reference {text!r} must name its kind, e.g. component:{text}"
        )
    namespace = default_namespace
    if "/" in raw:
        namespace, raw = raw.split("/", 1)
        check_name(namespace, field, "namespace")
    check_name(raw, field)
    return Ref(kind=kind, namespace=namespace.lower(), name=raw)
