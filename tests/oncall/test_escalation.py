"""Escalation end to end: an alert comes in, the frontline on call hears first, the next tier
after the delay, acknowledgement stops it; flood control; a failing channel falls through."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lamplighter.alerting.models import AlertGroupLog
from lamplighter.core import clock, jobs
from lamplighter.core.db import Database, utcnow
from lamplighter.core.models import InboxItem, Job, User
from lamplighter.core.settings import Settings
from lamplighter.oncall import channels, on_duty
from lamplighter.oncall.models import (
    ContactMethod,
    Delivery,
    Escalation,
    EscalationPolicy,
    NotificationRule,
    OnCallSchedule,
)
from tests.alerting.fixtures_org import Org, am_body, groups
from tests.conftest import make_team, make_token, make_user

AM = "/api/v1/alerting/ingest/alertmanager/"
START = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def held() -> Iterator[clock.ManualClock]:
    with clock.frozen(START) as manual:
        yield manual


class Chain:
    """Frontline (a weekly schedule: member then lead) → application SRE (a user) after 10
    minutes → infrastructure SRE team after 15, repeated once."""

    def __init__(self, db: Database) -> None:
        self.org = Org(db)
        self.app_sre: User = make_user(db, role="sre")
        self.infra_a: User = make_user(db)
        self.infra_b: User = make_user(db)
        self.infra = make_team(db, lead=self.infra_a, members=[self.infra_b])
        with db.transaction() as session:
            schedule = OnCallSchedule(
                team_id=self.org.team.id,
                name="frontline",
                time_zone="Europe/Berlin",
                layers=[
                    {
                        "name": "weekly",
                        "kind": "rotation",
                        "until": None,
                        "versions": [
                            {
                                "effective_from": "2026-11-30T00:00:00+00:00",
                                "participants": [self.org.member.id, self.org.lead.id],
                                "kind": "weekly",
                                "every": 1,
                                "anchor": "2026-11-30T09:00:00+01:00",
                                "time_zone": "Europe/Berlin",
                                "restrictions": [],
                            }
                        ],
                    }
                ],
            )
            session.add(schedule)
            session.flush()
            policy = EscalationPolicy(
                team_id=self.org.team.id,
                name="checkout",
                is_team_default=True,
                repeat=1,
                tiers=[
                    {
                        "name": "Frontline",
                        "delay_minutes": 10,
                        "targets": [{"type": "schedule", "id": schedule.id}],
                    },
                    {
                        "name": "Application SRE",
                        "delay_minutes": 15,
                        "targets": [{"type": "user", "id": self.app_sre.id}],
                    },
                    {
                        "name": "Infrastructure SRE",
                        "delay_minutes": 20,
                        "targets": [{"type": "team", "id": self.infra.id}],
                    },
                ],
            )
            session.add(policy)
            session.flush()
            self.schedule_id, self.policy_id = schedule.id, policy.id
        # The week of 2026-11-30 is the member's; the week of 2026-12-07 09:00 the lead's.
        with db.sessionmaker() as session:
            [on_call] = on_duty.on_call_user_ids(session, self.schedule_id, utcnow())
        self.frontline = self.org.lead if on_call == self.org.lead.id else self.org.member


def drain(db: Database, settings: Settings, *, horizon_s: float = 0.0) -> None:
    """Run the worker until no job is due within ``horizon_s`` (later ones wait for the
    clock)."""
    worker = jobs.Worker(db, settings)
    for _ in range(400):
        if worker.run_once():
            continue
        with db.sessionmaker() as session:
            due = session.scalar(
                sa.select(sa.func.count())
                .select_from(Job)
                .where(
                    Job.status == "queued",
                    Job.due_at <= utcnow() + dt.timedelta(seconds=horizon_s),
                )
            )
        if not due:
            return
        import time

        time.sleep(0.05)
    raise AssertionError("jobs still due")


def inbox_of(db: Database, user: User) -> list[str]:
    with db.sessionmaker() as session:
        return list(
            session.scalars(
                sa.select(InboxItem.title)
                .where(InboxItem.user_id == user.id)
                .order_by(InboxItem.id)
            )
        )


def deliveries(db: Database) -> list[tuple[int, str, str, int]]:
    with db.sessionmaker() as session:
        return [
            (d.user_id, d.channel, d.status, d.tier)
            for d in session.scalars(sa.select(Delivery).order_by(Delivery.id))
        ]


def fire(client: TestClient, key: str, *fingerprints: str) -> None:
    answer = client.post(AM + key, json=am_body(fingerprints=fingerprints or ("a1",)))
    assert answer.status_code == 202, answer.text


def test_the_frontline_hears_first_then_each_tier_after_its_delay_until_acknowledged(
    client: TestClient, db: Database, settings: Settings, held: clock.ManualClock
) -> None:
    chain = Chain(db)
    _, key = chain.org.integration()
    fire(client, key)
    drain(db, settings)
    assert inbox_of(db, chain.frontline) and not inbox_of(db, chain.org.member)
    assert [d[0] for d in deliveries(db)] == [chain.frontline.id]
    assert not inbox_of(db, chain.app_sre)
    held.advance(minutes=9)
    drain(db, settings)
    assert not inbox_of(db, chain.app_sre)  # not before its delay
    held.advance(minutes=1, seconds=1)
    drain(db, settings)
    assert len(inbox_of(db, chain.app_sre)) == 1
    held.advance(minutes=15, seconds=1)
    drain(db, settings)
    assert inbox_of(db, chain.infra_a) and inbox_of(db, chain.infra_b)
    # The infrastructure SRE acknowledges: nobody hears again, not even on the repeat.
    group_id = groups(db)[0].id
    from tests.conftest import make_token

    token = make_token(db, chain.infra_a)
    acked = client.post(
        f"/api/v1/alerting/groups/{group_id}/acknowledge",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert acked.status_code == 200, acked.text  # paged, so allowed though not in the team
    before = deliveries(db)
    held.advance(hours=2)
    drain(db, settings)
    assert deliveries(db) == before
    with db.sessionmaker() as session:
        timeline = [
            what
            for (what,) in session.execute(sa.text("SELECT what FROM alert_group_log ORDER BY id"))
        ]
    assert timeline[:2] == ["opened", "tier"] and "acknowledged" in timeline
    assert timeline.count("escalated") == 2


def test_without_acknowledgement_the_chain_repeats_then_stops(
    client: TestClient, db: Database, settings: Settings, held: clock.ManualClock
) -> None:
    chain = Chain(db)
    _, key = chain.org.integration()
    fire(client, key)
    for _ in range(12):
        held.advance(minutes=10, seconds=1)
        drain(db, settings)
    tiers_run = [d[3] for d in deliveries(db) if d[0] in (chain.frontline.id, chain.app_sre.id)]
    assert tiers_run.count(0) == 2 and tiers_run.count(1) == 2  # the first round and one repeat


def test_escalate_now_and_reassign_by_hand(
    client: TestClient, db: Database, settings: Settings, held: clock.ManualClock
) -> None:
    chain = Chain(db)
    _, key = chain.org.integration()
    fire(client, key)
    drain(db, settings)
    group_id = groups(db)[0].id
    from tests.conftest import make_token

    lead = {"Authorization": f"Bearer {make_token(db, chain.org.lead)}"}
    assert (
        client.post(f"/api/v1/alerting/groups/{group_id}/escalate", headers=lead).status_code == 200
    )
    drain(db, settings)
    assert len(inbox_of(db, chain.app_sre)) == 1  # at once, not after 10 minutes
    # The scheduled step for that tier does not page the SRE a second time.
    held.advance(minutes=10, seconds=1)
    drain(db, settings)
    assert len(inbox_of(db, chain.app_sre)) == 1
    helper = make_user(db)
    moved = client.post(
        f"/api/v1/alerting/groups/{group_id}/reassign", json={"user": helper.email}, headers=lead
    )
    assert moved.status_code == 200 and moved.json()["assignee_user_id"] == helper.id
    drain(db, settings)
    assert len(inbox_of(db, helper)) == 1


def test_a_storm_in_one_group_pages_each_person_once(
    client: TestClient, db: Database, settings: Settings, held: clock.ManualClock
) -> None:
    chain = Chain(db)
    _, key = chain.org.integration()
    for batch in range(5):
        fire(client, key, *(f"s{batch}-{i}" for i in range(50)))
    drain(db, settings)
    assert len(groups(db)) == 1 and groups(db)[0].alert_count == 250
    assert len(inbox_of(db, chain.frontline)) == 1


def test_notification_rules_run_in_order_and_ack_cancels_the_later_ones(
    client: TestClient,
    db: Database,
    settings: Settings,
    held: clock.ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = Chain(db)
    sent: list[tuple[str, int, str]] = []

    def fake_send(
        method: ContactMethod | None, user_id: int, note: channels.Notification, **_: Any
    ) -> str:
        sent.append((method.kind if method else "inbox", user_id, note.summary))
        assert note.ack_url and "/alerts/act/" in note.ack_url
        assert note.runbook_url == "https://runbooks.example.com/checkout/high-error-rate"
        return "ok"

    monkeypatch.setattr(channels, "send", fake_send)
    with db.transaction() as session:
        email = ContactMethod(user_id=chain.frontline.id, kind="email", address="lead@example.com")
        session.add(email)
        session.flush()
        session.add(
            NotificationRule(
                user_id=chain.frontline.id, contact_method_id=email.id, delay_minutes=5
            )
        )
    _, key = chain.org.integration()
    fire(client, key)
    drain(db, settings)
    assert [s[0] for s in sent] == ["inbox"]  # the email is for five minutes later
    group_id = groups(db)[0].id
    from tests.conftest import make_token

    client.post(
        f"/api/v1/alerting/groups/{group_id}/acknowledge",
        headers={"Authorization": f"Bearer {make_token(db, chain.frontline)}"},
    )
    held.advance(minutes=5, seconds=1)
    drain(db, settings)
    assert [s[0] for s in sent] == ["inbox"]
    assert "email" in {d[1] for d in deliveries(db) if d[2] == "skipped"}


def test_a_failing_channel_is_retried_and_falls_through_to_the_next_method(
    client: TestClient, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = Chain(db)
    calls: list[str] = []

    def flaky(
        method: ContactMethod | None, user_id: int, note: channels.Notification, **_: Any
    ) -> str:
        kind = method.kind if method else "inbox"
        calls.append(kind)
        if kind == "webhook":
            raise channels.ChannelError("the webhook answered 500", retryable=True)
        return kind

    monkeypatch.setattr(channels, "send", flaky)
    with db.transaction() as session:
        hook = ContactMethod(
            user_id=chain.frontline.id, kind="webhook", address="x", secret_encrypted="y"
        )
        mail = ContactMethod(user_id=chain.frontline.id, kind="email", address="lead@example.com")
        session.add_all([hook, mail])
        session.flush()
        session.add_all(
            [
                NotificationRule(
                    user_id=chain.frontline.id, contact_method_id=hook.id, delay_minutes=0
                ),
                NotificationRule(
                    user_id=chain.frontline.id, contact_method_id=mail.id, delay_minutes=30
                ),
            ]
        )
    _, key = chain.org.integration()
    fire(client, key)
    drain(db, settings, horizon_s=5)
    # The webhook failed, was retried with backoff and failed each time; the email, due in 30
    # minutes, was brought forward at the first failure.
    assert calls.count("webhook") == 5 and calls.count("email") == 1
    statuses = [(d[1], d[2]) for d in deliveries(db)]
    assert statuses.count(("webhook", "failed")) == 5
    assert ("email", "sent") in statuses and ("inbox", "sent") in statuses
    with db.sessionmaker() as session:
        dead = session.scalar(
            sa.select(sa.func.count()).select_from(Job).where(Job.status == "dead")
        )
    assert dead == 1  # the webhook's job, after its last try: recorded, not silent


def test_a_policy_tier_with_nobody_on_call_says_so_and_moves_on(
    client: TestClient, db: Database, settings: Settings, held: clock.ManualClock
) -> None:
    chain = Chain(db)
    with db.transaction() as session:
        session.execute(
            sa.update(OnCallSchedule).values(
                layers=[], updated_at=utcnow() + dt.timedelta(seconds=1)
            )
        )
    _, key = chain.org.integration()
    fire(client, key)
    drain(db, settings)
    with db.sessionmaker() as session:
        timeline = [
            what
            for (what,) in session.execute(sa.text("SELECT what FROM alert_group_log ORDER BY id"))
        ]
    assert "nobody" in timeline
    held.advance(minutes=10, seconds=1)
    drain(db, settings)
    assert len(inbox_of(db, chain.app_sre)) == 1


def test_a_flood_of_groups_is_throttled_per_contact_and_summarised_once(
    client: TestClient,
    db: Database,
    settings: Settings,
    held: clock.ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = Chain(db)
    sent: list[tuple[str, int]] = []

    def record(
        method: ContactMethod | None, user_id: int, note: channels.Notification, **_: Any
    ) -> str:
        sent.append((method.kind if method else "inbox", note.folded_count))
        return "ok"

    monkeypatch.setattr(channels, "send", record)
    with db.transaction() as session:
        mail = ContactMethod(user_id=chain.frontline.id, kind="email", address="x@example.com")
        session.add(mail)
        session.flush()
        session.add(
            NotificationRule(user_id=chain.frontline.id, contact_method_id=mail.id, delay_minutes=0)
        )
    _, key = chain.org.integration("pagerduty", group_by=["@dedup_key"])
    for index in range(14):  # fourteen different alerts, each its own group, in a minute
        event = {
            "routing_key": key,
            "event_action": "trigger",
            "dedup_key": f"flood-{index}",
            "payload": {"summary": f"Flood {index}", "source": "x", "severity": "error"},
        }
        assert client.post("/v2/enqueue", json=event).status_code == 202
    drain(db, settings)
    emails = [folded for kind, folded in sent if kind == "email"]
    assert len(emails) == 10  # the contact's rate: 10 in 5 minutes
    throttled = [d for d in deliveries(db) if d[2] == "throttled"]
    assert len(throttled) == 4 and all(d[1] == "email" for d in throttled)
    # The inbox is never throttled: the person can see all fourteen in the app.
    assert len([kind for kind, _ in sent if kind == "inbox"]) == 14
    held.advance(minutes=5, seconds=1)
    drain(db, settings)
    digests = [folded for kind, folded in sent if kind == "email"][10:]
    assert digests == [3]  # one summary: this group and 3 more held back


def test_a_batch_of_starts_writes_each_escalation_once_and_skips_an_acknowledged_group(
    client: TestClient, db: Database, settings: Settings, held: clock.ManualClock
) -> None:
    """A worker starts a batch of escalations in one transaction and writes their rows, jobs
    and timeline entries once for the batch (``escalation.flush_deferred``): each group gets
    its escalation, its frontline notification and its next step, exactly as one by one; a
    group acknowledged before the worker came to it pages nobody."""
    chain = Chain(db)
    _, key = chain.org.integration(group_by=["@dedup_key"])
    fire(client, key, *(f"fp{index}" for index in range(30)))
    acknowledged = groups(db)[0].id
    token = make_token(db, chain.frontline)
    answer = client.post(
        f"/api/v1/alerting/groups/{acknowledged}/acknowledge",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    drain(db, settings)
    with db.sessionmaker() as session:
        states: dict[int, str] = {
            group_id: state
            for group_id, state in session.execute(sa.select(Escalation.group_id, Escalation.state))
        }
        steps = session.scalars(
            sa.select(Job.payload).where(Job.kind == "oncall.escalation_step")
        ).all()
        told = session.scalars(
            sa.select(AlertGroupLog.group_id).where(AlertGroupLog.what == "notified")
        ).all()
    started = {group.id for group in groups(db)} - {acknowledged}
    assert set(states) == started and set(states.values()) == {"active"}
    assert sorted(step["group_id"] for step in steps) == sorted(started)
    assert sorted(told) == sorted(started)  # one "notified" entry per group, the frontline
    assert len(inbox_of(db, chain.frontline)) == 29
    held.advance(minutes=10, seconds=1)  # the second tier, for each group once
    drain(db, settings)
    assert len(inbox_of(db, chain.app_sre)) == 29


def test_deleting_an_integration_removes_its_groups_escalations_deliveries_and_timelines(
    client: TestClient, db: Database, settings: Settings, held: clock.ManualClock
) -> None:
    """The rows about a group carry no foreign key to cascade by (migration 0014): deleting
    an integration removes its groups' timelines at once and, through
    ``alert.integration_deleted``, on-call's escalations and delivery log; the next tier of a
    deleted group pages nobody, and another integration's groups keep everything."""
    chain = Chain(db)
    doomed_id, doomed = chain.org.integration(suffix="doomed")
    _, kept = chain.org.integration(suffix="kept")
    fire(client, doomed, "d1")
    fire(client, kept, "k1")
    drain(db, settings)
    by_integration = {group.integration_id: group.id for group in groups(db)}
    gone, stays = by_integration.pop(doomed_id), next(iter(by_integration.values()))

    def rows_about(group_id: int) -> dict[str, int]:
        with db.sessionmaker() as session:
            return {
                model.__tablename__: session.scalar(
                    sa.select(sa.func.count()).select_from(model).where(model.group_id == group_id)
                )
                or 0
                for model in (AlertGroupLog, Escalation, Delivery)
            }

    assert all(rows_about(gone).values()) and all(rows_about(stays).values())
    kept_before = rows_about(stays)
    headers = {"Authorization": f"Bearer {make_token(db, chain.org.lead)}"}
    answer = client.delete(f"/api/v1/alerting/integrations/{doomed_id}", headers=headers)
    assert answer.status_code == 204, answer.text
    assert rows_about(gone)["alert_group_log"] == 0  # in the deleting transaction
    drain(db, settings)
    assert rows_about(gone) == {
        "alert_group_log": 0,
        "oncall_escalations": 0,
        "notification_deliveries": 0,
    }
    assert rows_about(stays) == kept_before
    told_before = len(inbox_of(db, chain.app_sre))
    held.advance(minutes=10, seconds=1)  # both groups' second tier falls due
    drain(db, settings)
    assert len(inbox_of(db, chain.app_sre)) == told_before + 1  # the kept group's only
