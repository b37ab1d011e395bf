"""Access grants: who decides, who is told, and when access ends."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from lamplighter.catalog import service as catalog
from lamplighter.catalog.models import Entity
from lamplighter.core import audit, events, identity, inbox, jobs
from lamplighter.core.context import Actor
from lamplighter.core.db import Database, utcnow
from lamplighter.core.errors import Conflict, Forbidden, ValidationFailed
from lamplighter.core.models import Team, User
from lamplighter.core.settings import Settings
from lamplighter.selfservice import grants
from tests.conftest import SYSTEM, make_team, make_user

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def actor_of(db: Database, user: User) -> Actor:
    with db.sessionmaker() as session:
        return Actor(
            kind="user",
            label=user.email,
            user_id=user.id,
            role=user.role,
            team_ids=identity.team_ids_of(session=session, user_id=user.id),
        )


def make_resource(db: Database, team: Team, accountable: User | None = None) -> Entity:
    with db.transaction() as session:
        return catalog.create(
            session=session,
            actor=SYSTEM,
            data=catalog.EntityInput(
                kind="resource",
                name=f"db-{team.slug}",
                owner=team.slug,
                accountable=accountable.email if accountable else None,
            ),
        )


def inbox_titles(db: Database, user: User) -> list[str]:
    with db.sessionmaker() as session:
        return [item.title for item in inbox.list_for(session=session, user_id=user.id)]


def event_types(db: Database) -> list[str]:
    with db.sessionmaker() as session:
        return [
            event.type
            for event in events.list_after(session=session, limit=1000)
            if event.type.startswith("access.")
        ]


def audit_actions(db: Database, grant_id: int) -> list[str]:
    with db.sessionmaker() as session:
        entries = audit.iter_filtered(
            session=session, object_type=grants.OBJECT_TYPE, object_id=str(grant_id)
        )
        return [entry.action for entry in reversed(list(entries))]


class Org:
    """A team (lead + accountable member) owning a resource, and an outsider asking for it."""

    def __init__(self, db: Database) -> None:
        self.lead = make_user(db)
        self.accountable = make_user(db)
        self.team = make_team(db, lead=self.lead, members=[self.accountable])
        self.entity = make_resource(db, self.team, accountable=self.accountable)
        self.requester = make_user(db)
        self.requester_team = make_team(db, lead=self.requester)


def request(db: Database, org: Org, **kwargs: object) -> grants.AccessGrant:
    values: dict[str, object] = {
        "grantee": grants.Grantee(user_id=org.requester.id),
        "access": "read",
        "reason": "debug the nightly export",
        "now": NOW,
    }
    values.update(kwargs)
    with db.transaction() as session:
        return grants.request_grant(
            session=session,
            actor=actor_of(db, org.requester),
            entity_id=org.entity.id,
            **values,  # type: ignore[arg-type]
        )


def test_a_request_waits_for_the_accountable_person_who_is_notified(db: Database) -> None:
    org = Org(db)
    grant = request(db, org)
    assert grant.status == "pending"
    assert grant.expires_at == NOW + dt.timedelta(days=30)
    assert any(
        "Decide on an access request: read access" in t for t in inbox_titles(db, org.accountable)
    )
    assert inbox_titles(db, org.lead) == []  # the accountable person decides, not the lead
    assert event_types(db) == ["access.requested"]
    assert audit_actions(db, grant.id) == ["access.request"]


def test_the_wrong_approver_is_forbidden_and_changes_nothing(db: Database) -> None:
    org = Org(db)
    grant = request(db, org)
    stranger = make_user(db)
    for who in (org.lead, stranger, org.requester):
        with db.transaction() as session, pytest.raises(Forbidden):
            grants.approve(session=session, actor=actor_of(db, who), grant_id=grant.id)
    with db.sessionmaker() as session:
        assert grants.get(session=session, grant_id=grant.id).status == "pending"
    assert audit_actions(db, grant.id) == ["access.request"]


def test_approval_activates_and_tells_the_requester(db: Database) -> None:
    org = Org(db)
    grant = request(db, org, duration=dt.timedelta(days=7))
    later = NOW + dt.timedelta(days=2)
    with db.transaction() as session:
        approved = grants.approve(
            session=session, actor=actor_of(db, org.accountable), grant_id=grant.id, now=later
        )
        assert approved.status == "active"
        assert approved.approver_user_id == org.accountable.id
        # The clock starts at approval: seven full days from then.
        assert approved.expires_at == later + dt.timedelta(days=7)
    assert any("approved" in t for t in inbox_titles(db, org.requester))
    assert event_types(db) == ["access.requested", "access.granted"]
    assert audit_actions(db, grant.id) == ["access.request", "access.approve"]
    with db.transaction() as session, pytest.raises(Conflict):
        grants.approve(session=session, actor=actor_of(db, org.accountable), grant_id=grant.id)


def test_rejection_needs_a_reason_which_the_requester_reads(db: Database) -> None:
    org = Org(db)
    grant = request(db, org)
    with db.transaction() as session, pytest.raises(ValidationFailed) as error:
        grants.reject(
            session=session, actor=actor_of(db, org.accountable), grant_id=grant.id, reason=" "
        )
    assert error.value.errors[0].field == "body.reason"
    with db.transaction() as session:
        grants.reject(
            session=session,
            actor=actor_of(db, org.accountable),
            grant_id=grant.id,
            reason="use the read replica instead",
        )
    with db.sessionmaker() as session:
        items = inbox.list_for(session=session, user_id=org.requester.id)
        assert items[0].title.startswith("Access request rejected")
        assert items[0].body == "use the read replica instead"
        assert grants.get(session=session, grant_id=grant.id).status == "rejected"
    assert event_types(db) == ["access.requested", "access.rejected"]


def test_the_team_lead_decides_when_there_is_no_accountable_person(db: Database) -> None:
    org = Org(db)
    with db.transaction() as session:
        entity = session.get(Entity, org.entity.id)
        assert entity is not None
        entity.accountable_user_id = None
    grant = request(db, org)
    assert any("Decide on an access request" in t for t in inbox_titles(db, org.lead))
    with db.transaction() as session, pytest.raises(Forbidden):
        grants.approve(session=session, actor=actor_of(db, org.accountable), grant_id=grant.id)
    with db.transaction() as session:
        assert (
            grants.approve(session=session, actor=actor_of(db, org.lead), grant_id=grant.id).status
            == "active"
        )


def test_admins_may_decide_anything(db: Database) -> None:
    org = Org(db)
    grant = request(db, org)
    admin = make_user(db, role="admin")
    with db.transaction() as session:
        grants.approve(session=session, actor=actor_of(db, admin), grant_id=grant.id)
    assert any("approved" in t for t in inbox_titles(db, org.requester))


def test_an_approver_asking_gets_access_at_once(db: Database) -> None:
    org = Org(db)
    with db.transaction() as session:
        grant = grants.request_grant(
            session=session,
            actor=actor_of(db, org.accountable),
            entity_id=org.entity.id,
            grantee=grants.Grantee(team_id=org.requester_team.id),
            access="write",
            reason="the reporting team needs it",
            now=NOW,
        )
        assert grant.status == "active"
    assert event_types(db) == ["access.requested", "access.granted"]
    assert inbox_titles(db, org.accountable) == []  # nobody to ask, nothing to tell


def test_a_second_live_request_for_the_same_access_is_a_conflict(db: Database) -> None:
    org = Org(db)
    request(db, org)
    with pytest.raises(Conflict):
        request(db, org)
    request(db, org, access="write")  # another level is another request


def test_expiry_must_be_aware_and_within_a_year(db: Database) -> None:
    org = Org(db)
    with pytest.raises(ValidationFailed) as naive:
        request(db, org, expires_at=dt.datetime(2027, 1, 1, 12, 0))
    assert "time zone" in naive.value.errors[0].reason
    with pytest.raises(ValidationFailed) as too_long:
        request(db, org, duration=dt.timedelta(days=366))
    assert "365 days" in too_long.value.errors[0].reason
    with pytest.raises(ValidationFailed):
        request(db, org, expires_at=NOW - dt.timedelta(minutes=1))
    with db.sessionmaker() as session:
        assert grants.grants_for_entity(session, org.entity.id) == []


def test_revoke_by_the_grantee_but_not_by_a_stranger(db: Database) -> None:
    org = Org(db)
    grant = request(db, org)
    with db.transaction() as session:
        grants.approve(session=session, actor=actor_of(db, org.accountable), grant_id=grant.id)
    with db.transaction() as session, pytest.raises(Forbidden):
        grants.revoke(session=session, actor=actor_of(db, make_user(db)), grant_id=grant.id)
    with db.transaction() as session:
        revoked = grants.revoke(
            session=session,
            actor=actor_of(db, org.requester),
            grant_id=grant.id,
            reason="done debugging",
        )
        assert revoked.status == "revoked"
        assert revoked.revoked_by_user_id == org.requester.id
    assert event_types(db)[-1] == "access.revoked"
    assert audit_actions(db, grant.id)[-1] == "access.revoke"
    with db.transaction() as session, pytest.raises(Conflict):
        grants.revoke(session=session, actor=actor_of(db, org.accountable), grant_id=grant.id)


def test_grants_for_entity_shows_every_grant_and_revocation(db: Database) -> None:
    org = Org(db)
    first = request(db, org)
    with db.transaction() as session:
        grants.revoke(session=session, actor=actor_of(db, org.requester), grant_id=first.id)
    second = request(db, org, now=NOW + dt.timedelta(hours=1))
    with db.sessionmaker() as session:
        listed = grants.grants_for_entity(session, org.entity.id)
        assert [(g.id, g.status) for g in listed] == [(second.id, "pending"), (first.id, "revoked")]
    with db.transaction() as session:
        catalog.delete(session=session, actor=SYSTEM, ref=org.entity.ref)
    with db.sessionmaker() as session:
        assert grants.grants_for_entity(session, org.entity.id) == []


def _active(
    db: Database, org: Org, expires_at: dt.datetime, access: str, now: dt.datetime = NOW
) -> grants.AccessGrant:
    with db.transaction() as session:
        return grants.request_grant(
            session=session,
            actor=actor_of(db, org.accountable),
            entity_id=org.entity.id,
            grantee=grants.Grantee(user_id=org.requester.id),
            access=access,
            reason="on-call",
            expires_at=expires_at,
            now=now - dt.timedelta(days=1),
        )


def test_expire_due_expires_exactly_the_grants_past_their_time(db: Database) -> None:
    org = Org(db)
    past = _active(db, org, NOW - dt.timedelta(seconds=1), "read")
    exactly = _active(db, org, NOW, "write")
    future = _active(db, org, NOW + dt.timedelta(seconds=1), "admin")
    pending = request(
        db,
        org,
        grantee=grants.Grantee(team_id=org.requester_team.id),
        expires_at=NOW - dt.timedelta(hours=1),
        now=NOW - dt.timedelta(days=1),
    )
    with db.transaction() as session:
        assert grants.expire_due(session, NOW) == 2
    with db.sessionmaker() as session:
        status = {g.id: g.status for g in grants.grants_for_entity(session, org.entity.id)}
    assert status == {
        past.id: "expired",
        exactly.id: "expired",
        future.id: "active",
        pending.id: "pending",
    }
    assert event_types(db).count("access.expired") == 2
    assert audit_actions(db, past.id)[-1] == "access.expire"
    assert sum("Access expired" in t for t in inbox_titles(db, org.requester)) == 2
    with db.transaction() as session:
        assert grants.expire_due(session, NOW) == 0  # nothing twice


def test_a_duration_across_a_dst_change_expires_at_the_exact_instant(db: Database) -> None:
    org = Org(db)
    new_york = ZoneInfo("America/New_York")
    asked = dt.datetime(2026, 3, 1, 12, 0, tzinfo=new_york)  # EST; DST starts on 8 March
    grant = request(db, org, duration=dt.timedelta(days=14), now=asked)
    with db.transaction() as session:
        grant = grants.approve(
            session=session, actor=actor_of(db, org.accountable), grant_id=grant.id, now=asked
        )
    expected = dt.datetime(2026, 3, 15, 17, 0, tzinfo=dt.UTC)  # 14 x 24 h after 17:00 UTC
    assert grant.expires_at == expected
    assert grant.expires_at.astimezone(new_york).hour == 13  # the wall clock moved, not the instant
    with db.transaction() as session:
        assert grants.expire_due(session, expected - dt.timedelta(microseconds=1)) == 0
    with db.transaction() as session:
        assert grants.expire_due(session, expected.astimezone(new_york)) == 1
    with pytest.raises(ValidationFailed), db.transaction() as session:
        grants.expire_due(session, dt.datetime(2026, 3, 15, 17, 0))


def test_the_worker_expires_grants_on_its_recurring_job(db: Database, settings: Settings) -> None:
    assert grants.EXPIRE_JOB in jobs.RECURRING
    org = Org(db)
    now = utcnow()
    grant = _active(db, org, now + dt.timedelta(milliseconds=1), "read", now=now)
    time.sleep(0.01)  # past its expiry before the worker looks
    with db.transaction() as session:
        jobs.enqueue(session=session, kind=grants.EXPIRE_JOB)
    worker = jobs.Worker(db, settings)
    assert worker.run_once() == 1
    with db.sessionmaker() as session:
        assert grants.get(session=session, grant_id=grant.id).status == "expired"
