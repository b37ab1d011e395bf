"""The notification channels against real servers on 127.0.0.1: an aiosmtpd SMTP server for
email, an HTTP sink for Slack and the signed webhook, the database for the in-app inbox. Each
failure says whether trying again may help, and never shows an address or key."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from lamplighter.core import outbound
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.models import InboxItem
from lamplighter.core.settings import Settings
from lamplighter.oncall import channels, contacts, links
from lamplighter.oncall.channels import ChannelError, Notification
from lamplighter.oncall.models import ContactMethod
from tests.oncall import people_fixtures
from tests.oncall.people_fixtures import LOOPBACK, Folks, Sink, SmtpServer, free_port

folks, box, sink, smtp_server = (
    people_fixtures.folks,
    people_fixtures.box,
    people_fixtures.sink,
    people_fixtures.smtp_server,
)
HOOK_KEY = "hmac-signing-key-9c1f7e2a"
RUNBOOK = "https://wiki.example.com/runbooks/checkout-errors"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The servers listen on 127.0.0.1, which the outbound policy allows only when told."""
    return settings.model_copy(
        update={"outbound_allow_internal": LOOPBACK, "base_url": "https://ll.example.com"}
    )


def note(settings: Settings, user_id: int, **changes: Any) -> Notification:
    base = settings.base_url
    fields: dict[str, Any] = {
        "group_id": 12,
        "summary": "Error rate 7 %",
        "severity": "critical",
        "entity": "service:default/checkout",
        "team": "Payments",
        "runbook_url": RUNBOOK,
        "page_url": f"{base}/alerts/groups/12",
        "ack_url": links.url(
            settings, links.sign(settings, group_id=12, action="ack", user_id=user_id)
        ),
        "resolve_url": links.url(
            settings, links.sign(settings, group_id=12, action="resolve", user_id=user_id)
        ),
        "alert_count": 3,
        "tier_name": "Frontline",
        "is_repeat": False,
        "folded_count": 0,
    }
    fields.update(changes)
    return Notification(**fields)


def method(
    db: Database, box: SecretBox, folks: Folks, kind: str, address: str | None, **more: Any
) -> ContactMethod:
    with db.transaction() as session:
        created = contacts.create_method(
            session=session,
            actor=folks.actor(folks.member),
            user_id=folks.member.id,
            kind=kind,
            address=address,
            box=box,
            policy=outbound.Policy.from_settings(Settings(outbound_allow_internal=LOOPBACK)),
            **more,
        )
        session.expunge(created)
    return created


def send(
    db: Database, settings: Settings, box: SecretBox, target: ContactMethod | None, user_id: int, n
) -> str:
    with db.transaction() as session:
        return channels.send(target, user_id, n, session=session, settings=settings, box=box)


def smtp_settings(settings: Settings, server: SmtpServer, **more: Any) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": server.port,
            "smtp_from": "pager@lamplighter.example.com",
            "smtp_timeout_s": 5.0,
            **more,
        }
    )


# -- email -----------------------------------------------------------------------------------------
def test_an_email_reaches_a_real_smtp_server_with_the_runbook_and_links(
    db, settings: Settings, folks: Folks, box: SecretBox, smtp_server: SmtpServer
) -> None:
    mail = smtp_settings(
        settings,
        smtp_server,
        smtp_username="lamplighter",
        smtp_password=SecretStr("mail-password-0123"),
    )
    target = method(db, box, folks, "email", "alice@example.com")
    page = note(settings, folks.member.id)

    done = send(db, mail, box, target, folks.member.id, page)

    assert done == "email to a***@example.com"
    assert smtp_server.mailbox.logins == [("lamplighter", "mail-password-0123")]
    ((envelope, message),) = smtp_server.mailbox.messages
    assert envelope.rcpt_tos == ["alice@example.com"]
    assert message["Subject"] == "[CRITICAL] checkout: Error rate 7 %"
    assert message["From"] == "pager@lamplighter.example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    plain, rich = text.get_content(), html.get_content()
    for body in (plain, rich):
        assert RUNBOOK in body
        assert page.ack_url and page.ack_url in body
        assert page.resolve_url and page.resolve_url in body
        assert "Frontline" in body and "service:default/checkout" in body
    assert f'<a href="{page.ack_url}">Acknowledge</a>' in rich
    assert "work for 24 hours" in plain
    token = (page.ack_url or "").rsplit("/", 1)[1]
    assert links.verify(settings, token).action == "ack"


def test_a_runbook_that_is_not_a_web_link_is_shown_but_not_linked(
    db, settings: Settings, folks: Folks, box: SecretBox, smtp_server: SmtpServer
) -> None:
    target = method(db, box, folks, "email", "alice@example.com")
    page = note(settings, folks.member.id, runbook_url="javascript:alert(1)", summary="<b>x</b>")

    send(db, smtp_settings(settings, smtp_server), box, target, folks.member.id, page)

    ((_, message),) = smtp_server.mailbox.messages
    rich = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert 'href="javascript:' not in rich
    assert "Runbook: javascript:alert(1)" in rich
    assert "<b>x</b>" not in rich and "&lt;b&gt;x&lt;/b&gt;" in rich


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("550 5.1.1 No such user here", False), ("451 4.3.0 Try again later", True)],
)
def test_a_refusing_smtp_server_is_a_channel_error(
    db,
    settings: Settings,
    folks: Folks,
    box: SecretBox,
    smtp_server: SmtpServer,
    reply: str,
    retryable: bool,
) -> None:
    smtp_server.mailbox.refuse_rcpt = reply
    target = method(db, box, folks, "email", "alice@example.com")

    with pytest.raises(ChannelError) as failed:
        send(
            db,
            smtp_settings(settings, smtp_server),
            box,
            target,
            folks.member.id,
            note(settings, folks.member.id),
        )

    assert failed.value.retryable is retryable
    assert f"the mail server refused the recipient: {reply}" == failed.value.reason
    assert smtp_server.mailbox.messages == []


def test_an_unreachable_smtp_server_may_work_later(
    db, settings: Settings, folks: Folks, box: SecretBox
) -> None:
    target = method(db, box, folks, "email", "alice@example.com")
    closed = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_timeout_s": 2.0}
    )

    with pytest.raises(ChannelError) as failed:
        send(db, closed, box, target, folks.member.id, note(settings, folks.member.id))

    assert failed.value.retryable is True
    assert failed.value.reason.startswith("the mail server cannot be reached")


def test_without_an_smtp_host_email_is_not_retried(
    db, settings: Settings, folks: Folks, box: SecretBox
) -> None:
    target = method(db, box, folks, "email", "alice@example.com")

    with pytest.raises(ChannelError) as failed:
        send(db, settings, box, target, folks.member.id, note(settings, folks.member.id))

    assert failed.value.retryable is False
    assert "LAMPLIGHTER_SMTP_HOST is empty" in failed.value.reason


# -- webhooks --------------------------------------------------------------------------------------
def test_a_webhook_is_signed_like_the_event_webhooks(
    db, settings: Settings, folks: Folks, box: SecretBox, sink: Sink, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="httpx")  # as core/logs.py configures it
    target = method(db, box, folks, "webhook", f"{sink.url}/pager/secret-path", secret=HOOK_KEY)
    page = note(settings, folks.member.id, folded_count=2, is_repeat=True)

    done = send(db, settings, box, target, folks.member.id, page)

    assert done == "webhook 200"
    (received,) = sink.received()
    assert received.path == "/pager/secret-path"
    assert received.signed_by(HOOK_KEY), "the signature must verify with the method's key"
    assert not received.signed_by("another-key-entirely-000")
    assert received.headers["x-lamplighter-event"] == "oncall.notification"
    assert received.headers["user-agent"] == "Lamplighter-Webhooks/1"
    body = received.json()
    assert {k: body[k] for k in ("group_id", "summary", "severity", "runbook_url")} == {
        "group_id": 12,
        "summary": "Error rate 7 %",
        "severity": "critical",
        "runbook_url": RUNBOOK,
    }
    assert (body["ack_url"], body["resolve_url"]) == (page.ack_url, page.resolve_url)
    assert (body["folded_count"], body["is_repeat"], body["user_id"]) == (2, True, folks.member.id)
    assert body["subject"] == "[CRITICAL] checkout: Error rate 7 % (+2 more)"
    logged = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "secret-path" not in logged and HOOK_KEY not in logged


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (400, False)]
)
def test_a_webhook_that_fails_says_whether_to_retry(
    db, settings: Settings, folks: Folks, box: SecretBox, sink: Sink, status: int, retryable: bool
) -> None:
    target = method(db, box, folks, "webhook", f"{sink.url}/pager/secret-path", secret=HOOK_KEY)
    sink.answers = [status]

    with pytest.raises(ChannelError) as failed:
        send(db, settings, box, target, folks.member.id, note(settings, folks.member.id))

    assert failed.value.retryable is retryable
    assert failed.value.reason == f"the webhook answered HTTP {status}"
    assert "secret-path" not in failed.value.reason


def test_the_outbound_policy_refusal_is_final(
    db, settings: Settings, folks: Folks, box: SecretBox, sink: Sink
) -> None:
    target = method(db, box, folks, "webhook", f"{sink.url}/pager", secret=HOOK_KEY)
    closed_policy = settings.model_copy(update={"outbound_allow_internal": ""})

    with pytest.raises(ChannelError) as failed:
        send(db, closed_policy, box, target, folks.member.id, note(settings, folks.member.id))

    assert failed.value.retryable is False
    assert failed.value.reason == "the webhook: refused by the outbound policy"
    assert sink.received() == []


def test_an_unreachable_webhook_may_work_later(
    db, settings: Settings, folks: Folks, box: SecretBox
) -> None:
    target = method(
        db, box, folks, "webhook", f"http://127.0.0.1:{free_port()}/pager", secret=HOOK_KEY
    )

    with pytest.raises(ChannelError) as failed:
        send(db, settings, box, target, folks.member.id, note(settings, folks.member.id))

    assert failed.value.retryable is True
    assert failed.value.reason == "the webhook cannot be reached (ConnectError)"


# -- Slack -----------------------------------------------------------------------------------------
def test_slack_gets_the_incoming_webhook_json_with_buttons(
    db, settings: Settings, folks: Folks, box: SecretBox, sink: Sink
) -> None:
    target = method(
        db,
        box,
        folks,
        "slack",
        f"{sink.url}/services/T1/B2/slackToken123",
        slack_prefixes=(f"{sink.url}/services/",),
    )
    page = note(settings, folks.member.id, summary="p99 > 2 s & rising")

    done = send(db, settings, box, target, folks.member.id, page)

    assert done == "slack"
    (received,) = sink.received()
    assert received.path == "/services/T1/B2/slackToken123"
    message = received.json()
    assert message["text"] == "[CRITICAL] checkout: p99 &gt; 2 s &amp; rising"
    section, actions = message["blocks"]
    assert "p99 &gt; 2 s &amp; rising" in section["text"]["text"]
    assert f"<{page.page_url}|" in section["text"]["text"]
    buttons = {b["text"]["text"]: b["url"] for b in actions["elements"]}
    assert buttons == {
        "Acknowledge": page.ack_url,
        "Resolve": page.resolve_url,
        "Runbook": RUNBOOK,
        "Open in Lamplighter": page.page_url,
    }


def test_slack_saying_the_webhook_is_gone_is_final(
    db, settings: Settings, folks: Folks, box: SecretBox, sink: Sink
) -> None:
    target = method(
        db,
        box,
        folks,
        "slack",
        f"{sink.url}/services/T1/B2/slackToken123",
        slack_prefixes=(f"{sink.url}/services/",),
    )
    sink.answers, sink.body = [404], b"no_service"

    with pytest.raises(ChannelError) as failed:
        send(db, settings, box, target, folks.member.id, note(settings, folks.member.id))

    assert failed.value.retryable is False
    assert failed.value.reason == "Slack answered HTTP 404 (no_service)"


# -- inbox -----------------------------------------------------------------------------------------
def test_the_inbox_gets_an_item_linking_to_the_group(
    db, settings: Settings, folks: Folks, box: SecretBox
) -> None:
    done = send(db, settings, box, None, folks.member.id, note(settings, folks.member.id))

    with db.sessionmaker() as session:
        (item,) = session.scalars(sa.select(InboxItem)).all()
    assert done == f"inbox item {item.id}"
    assert item.user_id == folks.member.id
    assert item.title == "[CRITICAL] checkout: Error rate 7 %"
    assert item.link == "/alerts/groups/12"
    assert "Tier: Frontline" in item.body
    assert f"Runbook: {RUNBOOK}" in item.body


def test_a_method_is_only_used_for_its_owner(
    db, settings: Settings, folks: Folks, box: SecretBox, sink: Sink
) -> None:
    target = method(db, box, folks, "webhook", f"{sink.url}/pager", secret=HOOK_KEY)

    with pytest.raises(ChannelError) as failed:
        send(db, settings, box, target, folks.outsider.id, note(settings, folks.outsider.id))

    assert failed.value.retryable is False
    assert sink.received() == []


def test_a_key_that_no_longer_decrypts_is_final(
    db, settings: Settings, folks: Folks, box: SecretBox, sink: Sink
) -> None:
    target = method(db, box, folks, "webhook", f"{sink.url}/pager", secret=HOOK_KEY)
    other_box = SecretBox(b"a-rotated-secret-key-that-differs-0000")

    with pytest.raises(ChannelError) as failed:
        send(db, settings, other_box, target, folks.member.id, note(settings, folks.member.id))

    assert failed.value.retryable is False
    assert "cannot be decrypted" in failed.value.reason
