"""The entity page's Access panel: every grant, revocation and expiry of the resource."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.catalog.models import Entity
from lamplighter.core import identity, timefmt
from lamplighter.core.context import Actor
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import Team, User
from lamplighter.selfservice import grants
from tests.catalog.conftest import make_entity
from tests.conftest import make_team, make_user
from tests.helpers import person, sign_in, text

PAGE = "/catalog/service/default/ledger"


def actor_of(db: Database, user: User) -> Actor:
    with db.sessionmaker() as session:
        return Actor(
            kind="user",
            label=user.email,
            user_id=user.id,
            role=user.role,
            team_ids=identity.team_ids_of(session=session, user_id=user.id),
        )


class Org:
    """Payments owns the ledger (Dev is accountable); Ann and the search team ask for access."""

    def __init__(self, db: Database) -> None:
        self.lead = person(db, email="lin@example.com")
        self.dev = person(db, email="dev@example.com")
        self.asker = person(db, email="ann@example.com")
        self.viewer = person(db, email="vic@example.com", time_zone="Europe/Berlin")
        make_team(db, slug="payments", lead=self.lead, members=[self.dev])
        self.search: Team = make_team(db, slug="search", lead=self.asker)
        self.ledger: Entity = make_entity(db, "ledger", "payments", accountable="dev@example.com")


@pytest.fixture
def org(db: Database) -> Org:
    return Org(db)


def ask(
    db: Database,
    org: Org,
    *,
    now: dt.datetime,
    grantee: grants.Grantee | None = None,
    access: str = "read",
    reason: str = "debug the nightly export",
    duration: dt.timedelta | None = None,
) -> grants.AccessGrant:
    with db.transaction() as session:
        return grants.request_grant(
            session=session,
            actor=actor_of(db, org.asker),
            entity_id=org.ledger.id,
            grantee=grantee or grants.Grantee(user_id=org.asker.id),
            access=access,
            reason=reason,
            duration=duration,
            now=now,
        )


def approve(db: Database, org: Org, grant: grants.AccessGrant, now: dt.datetime) -> None:
    with db.transaction() as session:
        grants.approve(session=session, actor=actor_of(db, org.dev), grant_id=grant.id, now=now)


def panel(response: Any) -> str:
    match = re.search(r'<section class="card" id="access".*?</section>', response.text, re.S)
    assert match, "the entity page has no Access panel"
    return match.group(0)


def rows(response: Any) -> list[str]:
    """The panel's table rows as visible text, in page order."""
    body = re.search(r"<tbody>(.*?)</tbody>", panel(response), re.S)
    assert body, "the Access panel lists no grants"
    found = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in found]


def berlin(instant: dt.datetime) -> str:
    return timefmt.readable(instant, "Europe/Berlin")


def test_every_grant_revocation_and_expiry_is_on_the_resource_page(
    client: TestClient, db: Database, org: Org
) -> None:
    now = utcnow().replace(second=0, microsecond=0)
    expired = ask(db, org, now=now - dt.timedelta(days=10), duration=dt.timedelta(days=2))
    approve(db, org, expired, now - dt.timedelta(days=10))
    with db.transaction() as session:
        assert grants.expire_due(session, now) == 1
    revoked = ask(db, org, now=now - dt.timedelta(days=5), access="write")
    approve(db, org, revoked, now - dt.timedelta(days=5))
    with db.transaction() as session:
        grants.revoke(
            session=session,
            actor=actor_of(db, org.dev),
            grant_id=revoked.id,
            reason="left the project",
            now=now - dt.timedelta(days=2),
        )
    rejected = ask(db, org, now=now - dt.timedelta(days=3), access="admin")
    with db.transaction() as session:
        grants.reject(
            session=session,
            actor=actor_of(db, org.dev),
            grant_id=rejected.id,
            reason="read access is enough",
            now=now - dt.timedelta(days=3),
        )
    active = ask(db, org, now=now - dt.timedelta(hours=23))
    approve(db, org, active, now - dt.timedelta(hours=23))
    pending = ask(
        db,
        org,
        now=now,
        grantee=grants.Grantee(team_id=org.search.id),
        access="admin",
        duration=dt.timedelta(days=7),
    )

    sign_in(client, org.viewer)
    page = client.get(PAGE)
    assert page.status_code == 200
    pending_row, active_row, rejected_row, revoked_row, expired_row = rows(page)  # newest first

    assert "Search (team)" in pending_row and "admin" in pending_row
    assert "Pending" in pending_row and "Ann" in pending_row
    assert "7 days from approval" in pending_row
    assert 'href="/teams/search"' in panel(page)

    with db.sessionmaker() as session:
        active_until = grants.get(session=session, grant_id=active.id).expires_at
    assert "Ann ann@example.com" in active_row and "Active" in active_row
    assert "Approved by Dev" in active_row
    assert berlin(active_until) in active_row, "the expiry is shown in the viewer's time zone"
    assert "in 29 days" in active_row

    assert "Rejected by Dev" in rejected_row and "Note: read access is enough" in rejected_row
    assert "never granted" in rejected_row

    assert "Revoked" in revoked_row and "write" in revoked_row
    assert f"By Dev {berlin(now - dt.timedelta(days=2))}" in revoked_row
    assert "left the project" in revoked_row and "ended early, when revoked" in revoked_row

    assert "Expired" in expired_row and "8 days ago" in expired_row
    assert berlin(now - dt.timedelta(days=8)) in expired_row

    badges = re.findall(r'<span class="badge ([a-z-]+)">(\w+)</span>', panel(page))
    assert ("badge-ok", "Active") in badges and ("badge-danger", "Revoked") in badges
    assert ("badge-lead", "Pending") in badges and ("badge-muted", "Expired") in badges
    assert ("badge-danger", "Rejected") in badges
    # "Request access" opens the one access form with this entity filled in.
    assert "Request access" in panel(page)
    assert 'href="/selfservice/templates/access?entity=service%3Adefault/ledger"' in panel(page)
    assert pending.status == "pending" and "older grant" not in panel(page)


def test_markup_in_a_reason_is_shown_as_text(client: TestClient, db: Database, org: Org) -> None:
    ask(db, org, now=utcnow(), reason='<script>alert("x")</script><b>urgent</b>')
    sign_in(client, org.viewer)
    access = panel(client.get(PAGE))
    assert "<script>alert" not in access and "<b>urgent" not in access
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;urgent" in access


def test_an_entity_without_grants_says_so(client: TestClient, db: Database, org: Org) -> None:
    sign_in(client, org.viewer)
    access = panel(client.get(PAGE))
    assert "<table" not in access
    assert "No one has been granted access to ledger through Lamplighter yet." in access


def test_viewers_are_not_offered_to_request_access(
    client: TestClient, db: Database, org: Org
) -> None:
    reader = person(db, email="reader@example.com", role="viewer")
    sign_in(client, reader)
    access = panel(client.get(PAGE))
    assert "Request access" not in access and "No one has been granted" in access


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def test_many_grants_cost_no_more_queries_and_the_newest_fifty_are_shown(
    client: TestClient, db: Database, org: Org
) -> None:
    start = utcnow() - dt.timedelta(days=1)
    ask(db, org, now=start)
    ask(db, org, now=start, grantee=grants.Grantee(team_id=org.search.id))
    sign_in(client, org.viewer)
    client.get(PAGE)  # warm every cache the first request fills
    with counting(db) as few:
        assert len(rows(client.get(PAGE))) == 2
    others = [make_user(db) for _ in range(51)]
    for i, other in enumerate(others, start=1):
        ask(db, org, now=start + dt.timedelta(minutes=i), grantee=grants.Grantee(user_id=other.id))
    team = grants.Grantee(team_id=org.search.id)
    ask(db, org, now=start + dt.timedelta(hours=2), grantee=team, access="write")
    with counting(db) as many:
        page = client.get(PAGE)
    listed = rows(page)
    assert len(listed) == 50
    assert "Search (team) write" in listed[0], "the newest grant comes first"
    assert others[-1].email in listed[1] and others[2].email in listed[-1]
    assert "4 older grants not shown" in text(page)
    assert "(54)" in panel(page)
    assert len(many) == len(few), "the panel must not query once per grant"
