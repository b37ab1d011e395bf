"""What a typed reference means: one resolver for the API, the pages and the CLI.

A reference is ``kind:namespace/name``, ``kind:name`` (the default namespace), or a bare
``name`` / ``namespace/name`` that names exactly one entity whatever its kind. When it names
none, or several, the error says which entities come closest::

    resolve(session=s, text="checkout-d", field="body.entity")
    # ValidationFailed: no catalog entity 'checkout-d'; did you mean resource:default/checkout-db?
    resolve(session=s, text="payments")
    # ValidationFailed: 'payments' is ambiguous: service:default/payments or system:default/payments

An explicit ``kind:`` reference that is not in the catalog stays a ``NotFound`` (the API's
``/entities/{kind}/{namespace}/{name}`` routes answer 404, as they always did), with the same
suggestions in its message.

Suggestions stay cheap however big the catalog: the database narrows to at most
``CANDIDATES`` names sharing a prefix or a word with the typed one, and only those are ranked
(difflib), so a miss costs two bounded queries.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.catalog.models import Entity
from lamplighter.catalog.refs import Ref, parse_ref
from lamplighter.core.errors import NotFound, ValidationFailed

CANDIDATES = 200  # names ranked for "did you mean"; the database picks them
SUGGESTIONS = 3  # named in a message
SUGGEST_LIMIT = 10  # offered by a picker
WORD_SPLIT = re.compile(r"[-_.]+")
KIND_NAMES = {"api": "API"}  # how a kind reads in a sentence, where not as written


@dataclass(frozen=True)
class Match:
    """An entity as a suggestion: its full reference and what a picker shows."""

    id: int
    kind: str
    namespace: str
    name: str
    title: str
    owner_team_id: int | None

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"

    @property
    def name_key(self) -> str:
        return self.name.lower()


_COLUMNS = (
    Entity.id,
    Entity.kind,
    Entity.namespace,
    Entity.name,
    Entity.title,
    Entity.owner_team_id,
)


def _matches(session: Session, query: sa.Select[Any]) -> list[Match]:
    return [Match(*row) for row in session.execute(query).all()]


def _kind_words(kinds: Sequence[str]) -> str:
    """``service``, ``service or API``, ``service, API or resource``."""
    names = [KIND_NAMES.get(k, k) for k in kinds]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _either(refs: Sequence[str]) -> str:
    return refs[0] if len(refs) == 1 else f"{', '.join(refs[:-1])} or {refs[-1]}"


def _like(text: str) -> str:
    """``text`` for a LIKE pattern: its own ``%`` and ``_`` (names have underscores) literal."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def same_name(
    *, session: Session, name: str, kinds: Sequence[str] | None = None, limit: int = 50
) -> list[Match]:
    """Every entity with this name (ignoring case), in any kind and namespace."""
    query = sa.select(*_COLUMNS).where(Entity.name_key == name.lower())
    if kinds:
        query = query.where(Entity.kind.in_(kinds))
    return _matches(session, query.order_by(Entity.kind, Entity.namespace).limit(limit))


def nearest(
    *,
    session: Session,
    name: str,
    kinds: Sequence[str] | None = None,
    limit: int = SUGGESTIONS,
    exclude: Iterable[str] = (),
) -> list[Match]:
    """The entities whose names are closest to ``name``: a bounded set the database finds
    (same first letters, or a word of the name inside theirs), ranked by similarity."""
    key = name.lower()
    found: dict[int, Match] = {}
    # Longest shared prefixes first, so that in a catalog of a thousand "svc-…" names the
    # candidates are the ones that share most of the name, not the first two hundred by name.
    cuts = sorted({len(key) - 1, len(key) - 2, len(key) * 2 // 3, len(key) // 2, 3}, reverse=True)
    for cut in (c for c in cuts if c >= 3):
        query = sa.select(*_COLUMNS).where(
            Entity.name_key.like(_like(key[:cut]) + "%", escape="\\")
        )
        if kinds:
            query = query.where(Entity.kind.in_(kinds))
        for match in _matches(session, query.order_by(Entity.name_key).limit(CANDIDATES // 4)):
            found.setdefault(match.id, match)
        if len(found) >= 20:
            break
    words = [w for w in WORD_SPLIT.split(key) if len(w) >= 3][:4]
    if words and len(found) < 20:  # a word of it inside another name: "orders" → "legacy-orders"
        contains = [Entity.name_key.like(f"%{_like(word)}%", escape="\\") for word in words]
        query = sa.select(*_COLUMNS).where(sa.or_(*contains))
        if kinds:
            query = query.where(Entity.kind.in_(kinds))
        for match in _matches(session, query.order_by(Entity.name_key).limit(CANDIDATES // 2)):
            found.setdefault(match.id, match)
    skip = set(exclude)

    def score(match: Match) -> float:
        return difflib.SequenceMatcher(None, key, match.name.lower()).ratio()

    ranked = sorted(
        (m for m in found.values() if m.ref not in skip and score(m) >= 0.5),
        key=lambda m: (
            -score(m),
            -_shared_prefix(key, m.name_key),
            m.namespace != "default",
            m.ref,
        ),
    )
    return ranked[:limit]


def _shared_prefix(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _did_you_mean(matches: Sequence[Match]) -> str:
    if not matches:
        return ""
    return f"; did you mean {_either([m.ref for m in matches])}?"


def _closest(
    session: Session, name: str, kinds: Sequence[str] | None, exclude: Iterable[str] = ()
) -> list[Match]:
    """Same name in other kinds or namespaces first, then the nearest names."""
    skip = set(exclude)
    same = [m for m in same_name(session=session, name=name, kinds=kinds) if m.ref not in skip]
    near = nearest(session=session, name=name, kinds=kinds, exclude={*skip, *(m.ref for m in same)})
    return [*same, *near][:SUGGESTIONS]


def did_you_mean(*, session: Session, name: str, kinds: Sequence[str] | None = None) -> str:
    """``"; did you mean a or b?"`` for a name not found, or nothing when nothing is close."""
    return _did_you_mean(_closest(session, name, kinds))


def resolve(
    *,
    session: Session,
    text: str,
    field: str = "ref",
    kinds: Sequence[str] | None = None,
    default_namespace: str = "default",
) -> Entity:
    """The entity a typed reference names; a ``ValidationFailed`` on ``field`` (or, for an
    explicit ``kind:`` reference not in the catalog, a ``NotFound``) naming the closest ones."""
    raw = text.strip()
    if not raw:
        raise ValidationFailed.one(field, "enter a catalog reference, e.g. resource:orders-db")
    # Checked by the reference rules (for a bare name any kind will do: none is named).
    try:
        parsed = parse_ref(
            raw,
            default_kind=None if ":" in raw else "service",
            default_namespace=default_namespace,
            field=field,
        )
    except ValidationFailed as exc:
        reason = exc.errors[0].reason if exc.errors else exc.detail
        raise ValidationFailed.one(field, f"no catalog entity {raw!r}: {reason}") from None
    if ":" in raw:
        return _explicit(session, parsed, raw, field, kinds)
    name = parsed.name
    namespace = parsed.namespace if "/" in raw else None
    found = same_name(session=session, name=name, kinds=kinds)
    if namespace is not None:
        found = [m for m in found if m.namespace == namespace.lower()]
    elif len(found) > 1:  # the default namespace first, as in Backstage
        here = [m for m in found if m.namespace == default_namespace.lower()]
        found = here or found
    if len(found) == 1:
        entity = session.get(Entity, found[0].id)
        assert entity is not None
        return entity
    if found:
        refs = [m.ref for m in found]
        raise ValidationFailed.one(field, f"{raw!r} is ambiguous: {_either(refs)}")
    what = f"catalog entity {raw!r}" + (f" of kind {_kind_words(kinds)}" if kinds else "")
    suggestions = _closest(session, name, kinds)
    if kinds and not suggestions:  # something of another kind may be what they meant
        other = same_name(session=session, name=name, limit=SUGGESTIONS)
        if other:
            named = _either([m.ref for m in other])
            raise ValidationFailed.one(field, f"no {what}: {named} is not a {_kind_words(kinds)}")
    raise ValidationFailed.one(field, f"no {what}{_did_you_mean(suggestions)}")


def _explicit(
    session: Session, ref: Ref, raw: str, field: str, kinds: Sequence[str] | None
) -> Entity:
    if kinds and ref.kind not in kinds:
        raise ValidationFailed.one(
            field, f"choose a {_kind_words(kinds)}: {ref} is a {KIND_NAMES.get(ref.kind, ref.kind)}"
        )
    entity = session.scalar(
        sa.select(Entity).where(
            Entity.kind == ref.kind,
            Entity.namespace == ref.namespace,
            Entity.name_key == ref.name.lower(),
        )
    )
    if entity is None:
        suggestions = _closest(session, ref.name, kinds)
        raise NotFound(f"no catalog entity {ref}{_did_you_mean(suggestions)}")
    return entity


def suggest(
    *, session: Session, text: str, kinds: Sequence[str] | None = None, limit: int = SUGGEST_LIMIT
) -> list[Match]:
    """Entities a picker offers for what was typed so far: exact names, then names starting
    with it, then names or titles containing it; at most ``limit``."""
    raw = text.strip().lower()[:200]
    if ":" in raw:  # "resource:check" narrows to the kind typed
        kind_part, raw = raw.split(":", 1)
        kinds = [k for k in (kinds or [kind_part]) if k == kind_part] or ["-"]
    if "/" in raw:
        raw = raw.split("/", 1)[1]
    raw = raw.strip()
    query = sa.select(*_COLUMNS)
    if raw:
        pattern = f"%{_like(raw)}%"
        query = query.where(
            sa.or_(
                Entity.name_key.like(pattern, escape="\\"),
                sa.func.lower(Entity.title).like(pattern, escape="\\"),
            )
        )
    if kinds:
        query = query.where(Entity.kind.in_(kinds))
    found = _matches(session, query.order_by(Entity.name_key, Entity.id).limit(CANDIDATES))

    def rank(match: Match) -> tuple[int, int, str]:
        name = match.name.lower()
        place = 0 if name == raw else 1 if name.startswith(raw) else 2 if raw in name else 3
        return (place, len(name), match.ref)

    return sorted(found, key=rank)[:limit]
