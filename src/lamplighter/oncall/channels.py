"""The channels a notification goes out through: email, Slack, a signed webhook, the in-app inbox.

Each channel takes one :class:`Notification` (what a person is told about an alert group) and
delivers it through one contact method, now. :func:`send` answers a short description of what
it did, or raises :class:`ChannelError` saying why it could not and whether trying again may
help; the escalation runtime logs the attempt, retries what may succeed later and falls through
to the person's next method otherwise::

    try:
        done = channels.send(method, user.id, note, session=session, settings=settings)
    except channels.ChannelError as exc:
        ...  # exc.reason for the delivery log; exc.retryable: back off, or the next method

- **email** goes through the SMTP server of ``LAMPLIGHTER_SMTP_*`` (STARTTLS and login when set,
  implicit TLS on port 465): a text and an HTML part with the runbook and the one-click links;
- **Slack** posts the incoming-webhook JSON, with buttons linking to acknowledge and resolve;
- **webhook** posts the notification as JSON, signed as the outgoing event webhooks are:
  ``X-Lamplighter-Signature-256: sha256=<HMAC-SHA256 of the body with the method's key>``;
- **inbox** adds an item to the person's in-app inbox, linking to the alert group's page.

HTTP goes through the outbound policy (``core/outbound.py``); a refusal is never retried. The
error reasons never carry an address or key: they end up in the delivery log and on pages.
"""

from __future__ import annotations

import dataclasses
import html
import re
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy.orm import Session

from lamplighter.core import inbox, outbound
from lamplighter.core.crypto import SecretBox, hmac_sha256
from lamplighter.core.db import utcnow
from lamplighter.core.models import InboxItem
from lamplighter.core.settings import Settings
from lamplighter.core.webhooks import SIGNATURE_HEADER
from lamplighter.oncall.models import ContactKind, ContactMethod

# Tests may swap the network for a transport (httpx.MockTransport); None means the outbound
# policy's client, which checks every address it connects to.
TRANSPORT: httpx.BaseTransport | None = None
USER_AGENT = "Lamplighter-Webhooks/1"
EVENT_TYPE = "oncall.notification"
_SLACK_ERROR = re.compile(r"^[a-z_]{1,60}$")  # Slack answers errors as words: no_service, …
_SLACK_TEXT_MAX = 2900  # a section's text may hold 3000 characters
_BUTTON_URL_MAX = 3000


class ChannelError(Exception):
    """A channel could not deliver. ``reason`` is for people (no secrets in it);
    ``retryable`` says whether the same method may succeed later."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Notification:
    """What a person is told about an alert group, on every channel alike."""

    group_id: int
    summary: str
    severity: str
    entity: str | None  # the catalog reference the group is about, e.g. service:default/checkout
    team: str  # the owning team's name
    runbook_url: str | None
    page_url: str  # the alert group's page
    ack_url: str | None  # signed one-click links (oncall/links.py); None in a test message
    resolve_url: str | None
    alert_count: int = 1
    tier_name: str = ""
    is_repeat: bool = False
    folded_count: int = 0  # notifications about other groups folded into this one

    @property
    def subject(self) -> str:
        """``[CRITICAL] checkout: Error rate 7 %`` (about what, the entity's name or the team)."""
        about = short_name(self.entity) if self.entity else self.team
        subject = f"[{self.severity.upper()}] {about}: {self.summary}" if about else self.summary
        if self.folded_count:
            subject += f" (+{self.folded_count} more)"
        return subject


def short_name(ref: str) -> str:
    """``service:default/checkout`` as ``checkout``."""
    return ref.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def _web_link(url: str | None) -> str | None:
    """The URL when a client may open it as a link (http or https), else None: a runbook
    annotation comes from whoever sent the alert, and ``javascript:`` is no runbook."""
    if not url or len(url) > _BUTTON_URL_MAX:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in {"http", "https"} and parts.hostname else None


def test_notification(settings: Settings, method: ContactMethod) -> Notification:
    """What the contact method test sends: a notification about nothing, without links to act."""
    return Notification(
        group_id=0,
        summary=f"Test notification: this is how Lamplighter reaches you ({method.label})",
        severity="info",
        entity=None,
        team="Lamplighter",
        runbook_url=None,
        page_url=settings.base_url.rstrip("/") + "/",
        ack_url=None,
        resolve_url=None,
        alert_count=0,
    )


def send(
    method: ContactMethod | None,
    user_id: int,
    note: Notification,
    *,
    session: Session,
    settings: Settings,
    box: SecretBox | None = None,
    flush: bool = True,
) -> str:
    """Deliver ``note`` to the person through ``method`` (None: the in-app inbox); answer what
    was done ("email to a***@example.com", "slack", "webhook 200", "inbox item 12").

    ``flush=False`` (a worker's batch adding many): an inbox item is made, not yet added, and
    kept in :func:`unflushed_inbox`, for the caller to add and name once its id is known."""
    if method is None or method.kind == ContactKind.INBOX.value:
        if not flush:
            unflushed_inbox(session).append(inbox_item(session, user_id, note, flush=False))
            return "inbox item"
        return _send_inbox(session, user_id, note)
    if method.user_id != user_id:
        raise ChannelError(f"contact method {method.id} belongs to someone else", retryable=False)
    box = box or SecretBox(settings.effective_secret_key())
    if method.kind == ContactKind.EMAIL.value:
        return _send_email(method.address, note, settings)
    if method.kind == ContactKind.SLACK.value:
        return _send_slack(_reveal(box, method.address), note, settings)
    if method.kind == ContactKind.WEBHOOK.value:
        if method.secret_encrypted is None:
            raise ChannelError("the webhook has no signing key", retryable=False)
        return _send_webhook(
            _reveal(box, method.address),
            _reveal(box, method.secret_encrypted),
            method,
            user_id,
            note,
            settings,
        )
    raise ChannelError(f"unknown contact method kind {method.kind!r}", retryable=False)


def _reveal(box: SecretBox, ciphertext: str) -> str:
    try:
        return box.decrypt(ciphertext)
    except ValueError as exc:
        raise ChannelError(
            "the method's address cannot be decrypted with the configured secret key "
            "(was LAMPLIGHTER_SECRET_KEY changed?); enter it again",
            retryable=False,
        ) from exc


# -- inbox -----------------------------------------------------------------------------------------
def _send_inbox(session: Session, user_id: int, note: Notification) -> str:
    return inbox_result(inbox_item(session, user_id, note, flush=True))


def inbox_item(session: Session, user_id: int, note: Notification, *, flush: bool) -> InboxItem:
    """The notification as an in-app inbox item: added and flushed, or (``flush=False``) made
    and left for the caller to add."""
    link = f"/alerts/groups/{note.group_id}" if note.group_id > 0 else None
    runbook = _web_link(note.runbook_url)
    body = _facts_text(note) + (f"\nRunbook: {runbook}" if runbook else "")
    if not flush:
        return inbox.notice(user_id=user_id, title=note.subject, body=body, link=link)
    return inbox.notify(session=session, user_id=user_id, title=note.subject, body=body, link=link)


def unflushed_inbox(session: Session) -> list[InboxItem]:
    """The inbox items ``send(flush=False)`` made in this session and nobody has taken yet."""
    items: list[InboxItem] = session.info.setdefault("oncall.unflushed_inbox", [])
    return items


def inbox_result(item: InboxItem) -> str:
    """What a delivery to the inbox says it did (the item's id is known once flushed)."""
    return f"inbox item {item.id}"


# -- email -----------------------------------------------------------------------------------------
def _facts(note: Notification) -> list[tuple[str, str]]:
    facts = [("Severity", note.severity), ("Team", note.team)]
    if note.entity:
        facts.append(("Entity", note.entity))
    if note.alert_count:
        facts.append(("Alerts", str(note.alert_count)))
    if note.tier_name:
        facts.append(("Tier", note.tier_name + (" (repeated)" if note.is_repeat else "")))
    if note.folded_count:
        facts.append(("Also", f"{note.folded_count} more notifications folded into this one"))
    return facts


def _facts_text(note: Notification) -> str:
    return "\n".join(f"{name}: {value}" for name, value in _facts(note))


def _links(note: Notification) -> list[tuple[str, str]]:
    """(label, URL) of every link the message offers, in the order shown."""
    links = []
    if note.ack_url:
        links.append(("Acknowledge", note.ack_url))
    if note.resolve_url:
        links.append(("Resolve", note.resolve_url))
    runbook = _web_link(note.runbook_url)
    if runbook:
        links.append(("Runbook", runbook))
    links.append(("Open in Lamplighter", note.page_url))
    return links


def render_email(note: Notification, *, to: str, sender: str, link_ttl_hours: int) -> EmailMessage:
    """The message: plain text first, the same as HTML second."""
    message = EmailMessage()
    message["Subject"] = note.subject.replace("\r", " ").replace("\n", " ")
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the pager
    if note.group_id > 0:
        message["X-Lamplighter-Alert-Group"] = str(note.group_id)
    links = _links(note)
    if note.runbook_url and not _web_link(note.runbook_url):
        runbook_text = f"Runbook: {note.runbook_url}\n"  # shown, not linked
    else:
        runbook_text = ""
    expiry = (
        f"The acknowledge and resolve links work for {link_ttl_hours} hours, for you only.\n"
        if note.ack_url or note.resolve_url
        else ""
    )
    text = (
        f"{note.summary}\n\n{_facts_text(note)}\n\n"
        + "".join(f"{label}: {url}\n" for label, url in links)
        + runbook_text
        + ("\n" + expiry if expiry else "")
    )
    message.set_content(text)
    rows = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in _facts(note)
    )
    buttons = " &middot; ".join(
        f'<a href="{html.escape(url, quote=True)}">{html.escape(label)}</a>' for label, url in links
    )
    body = (
        f"<html><body><h2>{html.escape(note.summary)}</h2><table>{rows}</table>"
        f"<p>{buttons}</p>"
        + (f"<p>Runbook: {html.escape(note.runbook_url or '')}</p>" if runbook_text else "")
        + (f"<p><small>{html.escape(expiry)}</small></p>" if expiry else "")
        + "</body></html>"
    )
    message.add_alternative(body, subtype="html")
    return message


def _send_email(address: str, note: Notification, settings: Settings) -> str:
    if not settings.smtp_host:
        raise ChannelError("email is not set up: LAMPLIGHTER_SMTP_HOST is empty", retryable=False)
    message = render_email(
        note, to=address, sender=settings.smtp_from, link_ttl_hours=settings.alert_link_ttl_hours
    )
    try:
        with _smtp(settings) as smtp:
            if settings.smtp_starttls and settings.smtp_port != 465:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                password = (
                    settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                )
                smtp.login(settings.smtp_username, password)
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()), (550, b""))
        raise _smtp_refusal("refused the recipient", code, reply) from exc
    except smtplib.SMTPResponseException as exc:
        raise _smtp_refusal("refused the message", exc.smtp_code, exc.smtp_error) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise ChannelError(f"the mail server does not support it: {exc}", retryable=False) from exc
    except ssl.SSLError as exc:
        raise ChannelError(
            f"TLS with the mail server failed: {exc.reason}", retryable=False
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, unresolvable
        reason = str(exc) or type(exc).__name__
        raise ChannelError(f"the mail server cannot be reached: {reason}", retryable=True) from exc
    return f"email to {mask_email(address)}"


def _smtp(settings: Settings) -> smtplib.SMTP:
    if settings.smtp_port == 465:  # implicit TLS (RFC 8314)
        return smtplib.SMTP_SSL(
            settings.smtp_host,
            settings.smtp_port,
            timeout=settings.smtp_timeout_s,
            context=ssl.create_default_context(),
        )
    return smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s)


def _smtp_refusal(what: str, code: int, reply: bytes | str) -> ChannelError:
    """A reply code's verdict (RFC 5321 §4.2.1): 4xx is transient, 5xx permanent; sending the
    same message again after a 550 gets a 550 again, so the next method should be tried."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    text = " ".join(text.split())[:200]
    return ChannelError(f"the mail server {what}: {code} {text}".rstrip(), 400 <= code < 500)


def mask_email(address: str) -> str:
    """``alice@example.com`` as ``a***@example.com``, for the delivery log."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


# -- HTTP: Slack and webhooks ----------------------------------------------------------------------
def _post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    settings: Settings,
    what: str,
    *,
    error_words: bool = False,
) -> int:
    """POST through the outbound policy; the status code, or ChannelError (no URL in it).
    ``error_words``: the receiver answers errors as a word worth quoting (Slack)."""
    policy = outbound.Policy.from_settings(settings)
    timeout_s = settings.webhook_timeout_s
    try:
        policy.check_url(url, resolve=False)
        with outbound.client(policy, timeout_s=timeout_s, transport=TRANSPORT) as client:
            response = client.post(url, content=body, headers=headers)
    except outbound.Refused as exc:
        # Not the reason: a delivery log must not map which internal hosts exist.
        raise ChannelError(f"{what}: {outbound.REFUSED}", retryable=False) from exc
    except httpx.TimeoutException as exc:
        raise ChannelError(f"{what} timed out after {timeout_s:g} s", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise ChannelError(
            f"{what} cannot be reached ({type(exc).__name__})", retryable=True
        ) from exc
    status = response.status_code
    if 200 <= status < 300:
        return status
    answer = response.text.strip()
    said = f" ({answer})" if error_words and _SLACK_ERROR.match(answer) else ""
    reason = f"{what} answered HTTP {status}{said}"
    if 300 <= status < 400:
        raise ChannelError(reason + "; redirects are not followed", retryable=False)
    # Rate limits and timeouts pass; any other 4xx is the request's fault and stays so.
    raise ChannelError(reason, retryable=status >= 500 or status in {408, 425, 429})


def _mrkdwn(text: str) -> str:
    """Text for Slack's mrkdwn: its three control characters escaped, as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(note: Notification) -> dict[str, Any]:
    """The incoming-webhook body: a fallback ``text`` and blocks with link buttons."""
    facts = " · ".join(f"*{name}:* {_mrkdwn(value)}" for name, value in _facts(note))
    headline = f"*<{note.page_url}|{_mrkdwn(note.subject)}>*"
    buttons = []
    for label, url in _links(note):
        button: dict[str, Any] = {
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "url": url,
            "action_id": label.lower().split()[0],
        }
        if label == "Acknowledge":
            button["style"] = "primary"
        elif label == "Resolve":
            button["style"] = "danger"
        buttons.append(button)
    return {
        "text": _mrkdwn(note.subject)[:_SLACK_TEXT_MAX],  # what the phone's notification says
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{headline}\n{facts}"[:_SLACK_TEXT_MAX]},
            },
            {"type": "actions", "elements": buttons},
        ],
    }


def _send_slack(url: str, note: Notification, settings: Settings) -> str:
    body = orjson.dumps(slack_message(note))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    _post(url, body, headers, settings, "Slack", error_words=True)
    return "slack"


def webhook_body(note: Notification, *, user_id: int, contact_method_id: int) -> bytes:
    """The generic webhook's JSON: the notification's fields, whom it is for and when."""
    return orjson.dumps(
        {
            "type": EVENT_TYPE,
            **dataclasses.asdict(note),
            "subject": note.subject,
            "user_id": user_id,
            "contact_method_id": contact_method_id,
            "sent_at": utcnow().isoformat(),
        }
    )


def _send_webhook(
    url: str,
    key: str,
    method: ContactMethod,
    user_id: int,
    note: Notification,
    settings: Settings,
) -> str:
    body = webhook_body(note, user_id=user_id, contact_method_id=method.id)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Lamplighter-Event": EVENT_TYPE,
        "X-Lamplighter-Delivery": f"notification-{method.id}-{note.group_id}-"
        + secrets.token_hex(4),
        SIGNATURE_HEADER: "sha256=" + hmac_sha256(key.encode(), body),
    }
    status = _post(url, body, headers, settings, "the webhook")
    return f"webhook {status}"
