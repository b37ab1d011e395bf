"""Contact methods and notification rules: each person's own, secrets encrypted at rest and shown
only as a hint (in answers, in the audit log, in log lines), rules in delay order, the default
when there are none, and the test notification."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from lamplighter.core import outbound
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.errors import Conflict, Forbidden, ValidationFailed
from lamplighter.core.models import InboxItem, User
from lamplighter.core.settings import Settings
from lamplighter.oncall import contacts
from lamplighter.oncall.models import ContactMethod, NotificationRule
from tests.conftest import auth, make_token
from tests.oncall import people_fixtures
from tests.oncall.people_fixtures import (
    LOOPBACK,
    Folks,
    Sink,
    actor_of,
    audit_actions,
    audit_text,
)

folks, box, sink = people_fixtures.folks, people_fixtures.box, people_fixtures.sink

SLACK_URL = "https://hooks.slack.com/services/T0001/B0002/s3cretSlackToken9Zq"
HOOK_URL = "https://hooks.example.com/pager/8f1c2e0d-token"
HOOK_KEY = "hmac-signing-key-9c1f7e2a"
SECRETS = (SLACK_URL, "s3cretSlackToken", HOOK_URL, "8f1c2e0d-token", HOOK_KEY)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test sink listens on 127.0.0.1, which the outbound policy allows only when told."""
    return settings.model_copy(update={"outbound_allow_internal": LOOPBACK})


def add(
    db: Database, box: SecretBox, user_id: int, kind: str, address: str | None = None, **more: Any
) -> ContactMethod:
    with db.transaction() as session:
        actor = more.pop("actor", None)
        method = contacts.create_method(
            session=session,
            actor=actor or _self(db, user_id),
            user_id=user_id,
            kind=kind,
            address=address,
            box=box,
            policy=more.pop("policy", outbound.Policy()),
            **more,
        )
        session.expunge(method)
    return method


def _self(db: Database, user_id: int) -> Actor:
    with db.sessionmaker() as session:
        user = session.get(User, user_id)
        assert user is not None
        session.expunge(user)
    return actor_of(db, user)


def rule(db: Database, user_id: int, method: ContactMethod, delay: int) -> NotificationRule:
    with db.transaction() as session:
        created = contacts.create_rule(
            session=session,
            actor=_self(db, user_id),
            user_id=user_id,
            contact_method_id=method.id,
            delay_minutes=delay,
        )
        session.expunge(created)
    return created


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


# -- secrets ---------------------------------------------------------------------------------------
def test_secrets_are_encrypted_at_rest_and_shown_only_as_a_hint(
    client, db, folks: Folks, box: SecretBox, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="httpx")  # as core/logs.py configures it
    headers = auth(make_token(db, folks.member))
    slack = client.post(
        "/api/v1/oncall/me/contact-methods",
        json={"kind": "slack", "label": "#payments-oncall", "address": SLACK_URL},
        headers=headers,
    )
    hook = client.post(
        "/api/v1/oncall/me/contact-methods",
        json={"kind": "webhook", "address": HOOK_URL, "secret": HOOK_KEY},
        headers=headers,
    )
    email = client.post(
        "/api/v1/oncall/me/contact-methods",
        json={"kind": "email", "address": "Alice@Example.com"},
        headers=headers,
    )
    assert (slack.status_code, hook.status_code, email.status_code) == (201, 201, 201), hook.text
    assert slack.json()["hint"] == "https://hooks.slack.com/…/n9Zq"
    assert hook.json()["hint"] == "https://hooks.example.com/…/oken"
    assert hook.json()["signed"] is True
    assert (email.json()["hint"], email.json()["label"]) == ("Alice@example.com", "Email")
    listed = client.get("/api/v1/oncall/me/contact-methods", headers=headers)
    changed = client.patch(
        f"/api/v1/oncall/me/contact-methods/{hook.json()['id']}",
        json={"secret": "a-new-signing-key-0042", "address": HOOK_URL + "2"},
        headers=headers,
    )
    assert changed.status_code == 200

    with db.sessionmaker() as session:
        rows = {m.kind: m for m in contacts.methods_of(session, folks.member.id)}
    assert box.decrypt(rows["slack"].address) == SLACK_URL
    assert box.decrypt(rows["webhook"].address) == HOOK_URL + "2"
    assert box.decrypt(rows["webhook"].secret_encrypted or "") == "a-new-signing-key-0042"
    stored = " ".join(f"{m.address} {m.secret_encrypted}" for m in rows.values())
    assert leaks(stored) == [], "stored in clear"
    for response in (slack, hook, email, listed, changed):
        assert leaks(response.text) == [], "an answer shows a secret"
    assert "a-new-signing-key" not in changed.text
    trail = audit_text(db)
    assert "contact_method.update" in trail
    assert "signing_key" in trail
    assert leaks(trail) == [] and "a-new-signing-key" not in trail, "the audit log keeps a secret"
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert leaks(logged) == [] and "a-new-signing-key" not in logged


def test_a_bad_address_is_refused_naming_the_field(client, db, folks: Folks) -> None:
    headers = auth(make_token(db, folks.member))
    cases = [
        ({"kind": "email", "address": "not-an-address"}, "body.address"),
        ({"kind": "email"}, "body.address"),
        ({"kind": "slack", "address": "http://hooks.slack.com/services/T/B/x"}, "body.address"),
        ({"kind": "slack", "address": "https://evil.example.com/services/T/B/x"}, "body.address"),
        ({"kind": "webhook", "address": "ftp://example.com/x", "secret": HOOK_KEY}, "body.address"),
        ({"kind": "webhook", "address": "http://169.254.169.254/x", "secret": HOOK_KEY}, None),
        ({"kind": "webhook", "address": "http://10.1.2.3/x", "secret": HOOK_KEY}, "body.address"),
        ({"kind": "webhook", "address": HOOK_URL}, "body.secret"),
        ({"kind": "webhook", "address": HOOK_URL, "secret": "short"}, "body.secret"),
        ({"kind": "email", "address": "a@example.com", "secret": HOOK_KEY}, "body.secret"),
        ({"kind": "inbox", "address": "a@example.com"}, "body.address"),
        ({"kind": "pager", "address": "a@example.com"}, "body.kind"),
        ({"kind": "email", "address": "a@example.com", "colour": "red"}, "body.colour"),
    ]
    for payload, field in cases:
        response = client.post("/api/v1/oncall/me/contact-methods", json=payload, headers=headers)
        assert response.status_code == 422, (payload, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        fields = [e["field"] for e in response.json()["errors"]]
        assert (field or "body.address") in fields, (payload, fields)
        if payload.get("secret") == HOOK_KEY:
            assert HOOK_KEY not in response.text
    metadata = client.post(
        "/api/v1/oncall/me/contact-methods",
        json={"kind": "webhook", "address": "http://169.254.169.254/x", "secret": HOOK_KEY},
        headers=headers,
    )
    assert "cloud metadata" in metadata.json()["errors"][0]["reason"]
    with db.sessionmaker() as session:
        assert contacts.methods_of(session, folks.member.id) == []
    assert "contact_method.create" not in audit_actions(db)


def test_slack_hosts_are_a_parameter(db, folks: Folks, box: SecretBox) -> None:
    with pytest.raises(ValidationFailed):
        add(db, box, folks.member.id, "slack", "http://127.0.0.1:9/hook")
    method = add(
        db,
        box,
        folks.member.id,
        "slack",
        "http://127.0.0.1:9/services/hook-token-1",
        slack_prefixes=("http://127.0.0.1:9/services/",),
    )
    assert method.address_hint == "http://127.0.0.1:9/…/en-1"


# -- whose methods ---------------------------------------------------------------------------------
def test_a_person_manages_only_their_own_methods(client, db, folks: Folks, box: SecretBox) -> None:
    mine = add(db, box, folks.member.id, "email", "alice@example.com")
    for other in (folks.outsider, folks.sre):
        headers = auth(make_token(db, other))
        path = f"/api/v1/oncall/me/contact-methods/{mine.id}"
        assert client.patch(path, json={"label": "x"}, headers=headers).status_code == 403
        assert client.delete(path, headers=headers).status_code == 403
        assert client.post(f"{path}/test", headers=headers).status_code == 403
        rule_body = {"contact_method_id": mine.id, "delay_minutes": 0}
        refused = client.post(
            "/api/v1/oncall/me/notification-rules", json=rule_body, headers=headers
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "body.contact_method_id"
        listed = client.get("/api/v1/oncall/me/contact-methods", headers=headers).json()
        assert listed["items"] == []
    with pytest.raises(Forbidden), db.transaction() as session:
        contacts.create_method(
            session=session,
            actor=folks.actor(folks.sre),
            user_id=folks.member.id,
            kind="email",
            address="sre-says@example.com",
            box=box,
        )
    # an admin may manage anyone's
    add(db, box, folks.member.id, "inbox", actor=folks.actor(folks.admin))
    with db.transaction() as session:
        contacts.update_method(
            session=session,
            actor=folks.actor(folks.admin),
            user_id=folks.member.id,
            method_id=mine.id,
            box=box,
            label="Work",
        )
    with db.sessionmaker() as session:
        assert [(m.kind, m.label) for m in contacts.methods_of(session, folks.member.id)] == [
            ("email", "Work"),
            ("inbox", "In-app inbox"),
        ]
    viewer = auth(make_token(db, folks.viewer))  # a viewer is paged like anyone: their own only
    own = client.post(
        "/api/v1/oncall/me/contact-methods",
        json={"kind": "email", "address": "viewer@example.com"},
        headers=viewer,
    )
    assert own.status_code == 201


def test_duplicates_and_limits_are_conflicts(db, folks: Folks, box: SecretBox) -> None:
    add(db, box, folks.member.id, "email", "alice@example.com")
    add(db, box, folks.member.id, "inbox")
    with pytest.raises(Conflict):
        add(db, box, folks.member.id, "email", "ALICE@example.com")
    with pytest.raises(Conflict):
        add(db, box, folks.member.id, "inbox")
    for n in range(18):
        add(db, box, folks.member.id, "email", f"alice+{n}@example.com")
    with pytest.raises(Conflict) as refused:
        add(db, box, folks.member.id, "email", "one-too-many@example.com")
    assert "at most 20 contact methods" in refused.value.detail

    with db.sessionmaker() as session:
        methods = contacts.methods_of(session, folks.member.id)
    for n in range(20):
        rule(db, folks.member.id, methods[n], n)
    with pytest.raises(Conflict) as too_many:
        rule(db, folks.member.id, methods[0], 100)
    assert "at most 20 notification rules" in too_many.value.detail


# -- rules -----------------------------------------------------------------------------------------
def test_without_rules_the_inbox_and_every_email_at_once(db, folks: Folks, box: SecretBox) -> None:
    with db.sessionmaker() as session:
        assert contacts.effective_rules(session, folks.member.id) == [(0, None)]
    work = add(db, box, folks.member.id, "email", "alice@example.com")
    add(db, box, folks.member.id, "slack", SLACK_URL)
    home = add(db, box, folks.member.id, "email", "alice@home.example.org")

    with db.sessionmaker() as session:
        chosen = contacts.effective_rules(session, folks.member.id)
    assert [(delay, m.id if m else None) for delay, m in chosen] == [
        (0, None),
        (0, work.id),
        (0, home.id),
    ]


def test_rules_come_in_delay_order_with_the_inbox_first(db, folks: Folks, box: SecretBox) -> None:
    email = add(db, box, folks.member.id, "email", "alice@example.com")
    slack = add(db, box, folks.member.id, "slack", SLACK_URL)
    rule(db, folks.member.id, email, 5)
    rule(db, folks.member.id, slack, 0)
    rule(db, folks.member.id, email, 30)

    with db.sessionmaker() as session:
        assert [
            (r.delay_minutes, m.kind) for r, m in contacts.rules_of(session, folks.member.id)
        ] == [
            (0, "slack"),
            (5, "email"),
            (30, "email"),
        ]
        chosen = contacts.effective_rules(session, folks.member.id)
    assert [(delay, m.kind if m else "inbox") for delay, m in chosen] == [
        (0, "inbox"),
        (0, "slack"),
        (5, "email"),
        (30, "email"),
    ]

    inbox_later = add(db, box, folks.member.id, "inbox")
    rule(db, folks.member.id, inbox_later, 10)  # the person chose when the inbox comes
    with db.sessionmaker() as session:
        chosen = contacts.effective_rules(session, folks.member.id)
    assert [(delay, m.kind if m else "inbox") for delay, m in chosen] == [
        (0, "slack"),
        (5, "email"),
        (10, "inbox"),
        (30, "email"),
    ]


def test_rules_over_the_api_page_in_delay_order(client, db, folks: Folks, box: SecretBox) -> None:
    headers = auth(make_token(db, folks.member))
    email = add(db, box, folks.member.id, "email", "alice@example.com")
    slack = add(db, box, folks.member.id, "slack", SLACK_URL)
    for method, delay in ((email, 15), (slack, 0), (email, 5), (slack, 15)):
        created = client.post(
            "/api/v1/oncall/me/notification-rules",
            json={"contact_method_id": method.id, "delay_minutes": delay},
            headers=headers,
        )
        assert created.status_code == 201, created.text
    twice = client.post(
        "/api/v1/oncall/me/notification-rules",
        json={"contact_method_id": email.id, "delay_minutes": 5},
        headers=headers,
    )
    assert twice.status_code == 409
    too_late = client.post(
        "/api/v1/oncall/me/notification-rules",
        json={"contact_method_id": email.id, "delay_minutes": 1441},
        headers=headers,
    )
    assert too_late.json()["errors"][0]["field"] == "body.delay_minutes"

    seen: list[tuple[int, str]] = []
    cursor = ""
    while True:
        page = client.get(
            f"/api/v1/oncall/me/notification-rules?limit=3&cursor={cursor}", headers=headers
        ).json()
        seen += [(r["delay_minutes"], r["contact_method"]["kind"]) for r in page["items"]]
        assert leaks(json.dumps(page)) == []
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert seen == [(0, "slack"), (5, "email"), (15, "email"), (15, "slack")]

    first = client.get("/api/v1/oncall/me/notification-rules", headers=headers).json()["items"][0]
    assert (
        client.delete(
            f"/api/v1/oncall/me/notification-rules/{first['id']}",
            headers=auth(make_token(db, folks.outsider)),
        ).status_code
        == 403
    )
    assert (
        client.delete(
            f"/api/v1/oncall/me/notification-rules/{first['id']}", headers=headers
        ).status_code
        == 204
    )
    assert audit_actions(db).count("notification_rule.create") == 4
    assert audit_actions(db)[-1] == "notification_rule.delete"


def test_removing_a_method_removes_its_rules(client, db, folks: Folks, box: SecretBox) -> None:
    email = add(db, box, folks.member.id, "email", "alice@example.com")
    slack = add(db, box, folks.member.id, "slack", SLACK_URL)
    rule(db, folks.member.id, email, 0)
    rule(db, folks.member.id, slack, 5)

    response = client.delete(
        f"/api/v1/oncall/me/contact-methods/{slack.id}", headers=auth(make_token(db, folks.member))
    )

    assert response.status_code == 204
    with db.sessionmaker() as session:
        assert [m.kind for _, m in contacts.rules_of(session, folks.member.id)] == ["email"]
        assert session.scalar(sa.select(sa.func.count()).select_from(NotificationRule)) == 1
    trail = audit_text(db)
    assert 'contact_method.delete {"before": {' in trail and '"rules": 1' in trail
    assert leaks(trail) == []


# -- the test notification -------------------------------------------------------------------------
def test_a_test_notification_goes_through_the_method_and_says_what_happened(
    client, db, folks: Folks, sink: Sink
) -> None:
    headers = auth(make_token(db, folks.member))
    created = client.post(
        "/api/v1/oncall/me/contact-methods",
        json={"kind": "webhook", "address": f"{sink.url}/pager", "secret": HOOK_KEY},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    path = f"/api/v1/oncall/me/contact-methods/{created.json()['id']}/test"

    sent = client.post(path, headers=headers)

    assert sent.status_code == 200, sent.text
    assert sent.json() == {"contact_method_id": created.json()["id"], "result": "webhook 200"}
    (received,) = sink.received()
    assert received.signed_by(HOOK_KEY)
    assert received.json()["summary"].startswith("Test notification")

    sink.answers = [503]
    failed = client.post(path, headers=headers)
    assert failed.status_code == 502
    problem = failed.json()
    assert problem["type"] == "/problems/channel-failed"
    assert "the webhook answered HTTP 503" in problem["detail"]
    assert "trying again later may work" in problem["detail"]
    assert "/pager" not in failed.text and HOOK_KEY not in failed.text
    trail = audit_text(db)
    assert trail.count("contact_method.test") == 2
    assert "failed: the webhook answered HTTP 503" in trail
    assert HOOK_KEY not in trail and "/pager" not in trail


def test_an_inbox_test_leaves_an_item_in_the_inbox(client, db, folks: Folks) -> None:
    headers = auth(make_token(db, folks.member))
    created = client.post(
        "/api/v1/oncall/me/contact-methods", json={"kind": "inbox"}, headers=headers
    ).json()

    sent = client.post(f"/api/v1/oncall/me/contact-methods/{created['id']}/test", headers=headers)

    assert sent.status_code == 200
    with db.sessionmaker() as session:
        (item,) = session.scalars(sa.select(InboxItem)).all()
    assert sent.json()["result"] == f"inbox item {item.id}"
    assert item.user_id == folks.member.id
    assert "Test notification" in item.title


def test_email_without_an_smtp_server_is_a_502_that_says_so(client, db, folks: Folks) -> None:
    headers = auth(make_token(db, folks.member))
    created = client.post(
        "/api/v1/oncall/me/contact-methods",
        json={"kind": "email", "address": "alice@example.com"},
        headers=headers,
    ).json()

    failed = client.post(f"/api/v1/oncall/me/contact-methods/{created['id']}/test", headers=headers)

    assert failed.status_code == 502
    assert "LAMPLIGHTER_SMTP_HOST is empty" in failed.json()["detail"]
    assert "fix the method first" in failed.json()["detail"]
