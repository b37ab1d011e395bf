"""The audit hash survives both databases: any JSON value recorded in an entry (huge integers,
1e16, 1e30, -0.0, 5e-324, astral characters, deep nesting) reads back and verifies; entries
hashed the old way (version 1) still verify; verify reports bad entries and never crashes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamplighter.core import audit
from lamplighter.core.db import Database
from lamplighter.core.models import AuditEntry
from tests.conftest import SYSTEM, auth, make_token, make_user

# PostgreSQL's JSONB refuses NUL in text; lone surrogates are not Unicode text.
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e16, 1e30, -0.0, 5e-324, 1.7976931348623157e308, 0.1, 2**63, -(2**64)]),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)


def record(db: Database, value: Any) -> None:
    with db.transaction() as session:
        audit.record(
            session=session,
            actor=SYSTEM,
            action="test.canonical",
            object_type="test",
            object_id=1,
            after={"parameter": value},
        )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=json_values)
def test_any_json_value_records_and_verifies(db: Database, value: Any) -> None:
    record(db, value)
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
        last = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert result.ok, (result.reason, value)
    assert last is not None and last.hash_version == audit.HASH_VERSION


def test_the_values_of_the_report_verify(db: Database) -> None:
    """The two values from the review: 1e16 reported tampering on PostgreSQL, 1e30 crashed."""
    for value in (1e16, 1e30, [1e16, {"n": 1e30}], 10**30 + 1):
        record(db, value)
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
    assert (result.ok, result.bad) == (True, 0)


def test_a_number_changed_in_place_is_found() -> None:
    base = {"parameter": 10**30 + 1}
    assert audit.canonical_json(base) != audit.canonical_json({"parameter": 10**30})
    assert audit.canonical_json({"n": 1e16}) == audit.canonical_json({"n": 10**16})
    assert audit.canonical_json({"n": -0.0}) == audit.canonical_json({"n": 0})
    assert audit.canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1e0}'


def test_version_1_entries_still_verify(db: Database) -> None:
    record(db, {"plain": 1})
    with db.transaction() as session:
        entry = session.scalars(sa.select(AuditEntry)).one()
        old = audit._hash({k: getattr(entry, k) for k in audit.HASHED_FIELDS}, 1)
        session.execute(
            sa.update(AuditEntry).where(AuditEntry.id == entry.id).values(hash=old, hash_version=1)
        )
    record(db, {"plain": 2})  # a version-2 entry chained to the version-1 one
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
        versions = list(session.scalars(sa.select(AuditEntry.hash_version).order_by(AuditEntry.id)))
    assert result.ok and versions == [1, 2]


def test_verify_counts_bad_entries_and_goes_on(db: Database) -> None:
    for n in range(5):
        record(db, n)
    with db.transaction() as session:
        ids = list(session.scalars(sa.select(AuditEntry.id).order_by(AuditEntry.id)))
        # an unreadable version-1 entry (orjson cannot hash 1e30 read back as an int) and an edit
        session.execute(
            sa.update(AuditEntry)
            .where(AuditEntry.id == ids[1])
            .values(hash_version=1, diff={"after": {"parameter": 10**30}})
        )
        session.execute(
            sa.update(AuditEntry).where(AuditEntry.id == ids[3]).values(actor_label="someone")
        )
    with db.sessionmaker() as session:
        result = audit.verify(session=session)
    assert (result.ok, result.broken_id, result.bad, result.checked) == (False, ids[1], 2, 5)
    assert "cannot be hashed" in (result.reason or "")


def test_the_api_and_the_cli_report_how_many_entries_do_not_hold(db: Database, client: Any) -> None:
    for n in range(3):
        record(db, n)
    with db.transaction() as session:
        first = session.scalars(sa.select(AuditEntry.id).order_by(AuditEntry.id)).first()
        session.execute(
            sa.update(AuditEntry).where(AuditEntry.id == first).values(actor_label="someone")
        )
    admin = make_user(db, role="admin")
    answer = client.get("/api/v1/audit/verify", headers=auth(make_token(db, admin)))
    assert answer.status_code == 200
    body = answer.json()
    with db.sessionmaker() as session:
        entries = session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    assert (body["ok"], body["broken_id"], body["bad"]) == (False, first, 1)
    assert body["checked"] == entries  # every entry was walked, past the broken one
