"""How each person is reached: contact methods, and notification rules saying which method is used
how long after they are paged ("immediately by Slack, after 5 minutes by email").

A person manages their own methods and rules; admins may manage anyone's. A Slack incoming-
webhook URL, a webhook URL and a webhook's HMAC key are secrets: stored encrypted
(``core.crypto.SecretBox``) and shown, in answers and in the audit log alike, only as a masked
hint such as ``https://hooks.slack.com/…/XXXX``. Email addresses are kept in clear.

Someone with no rules is reached by the in-app inbox and every email method they have, at once;
the inbox is always among the ways a person is told (:func:`effective_rules`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import email_validator
import sqlalchemy as sa
from sqlalchemy.orm import Session

from lamplighter.core import audit, outbound, people, webhooks
from lamplighter.core.context import Actor
from lamplighter.core.crypto import SecretBox
from lamplighter.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from lamplighter.core.identity import has_email
from lamplighter.core.models import Role
from lamplighter.core.pagination import MAX_ID, keyset
from lamplighter.core.settings import Settings, get_settings
from lamplighter.oncall import channels
from lamplighter.oncall.models import ContactKind, ContactMethod, NotificationRule
from lamplighter.oncall.people_schemas import MAX_DELAY_MINUTES, SLACK_PATH, URL_PATTERN

METHOD_TYPE = "contact_method"
RULE_TYPE = "notification_rule"
MAX_METHODS = 20
MAX_RULES = 20
MIN_SECRET = 16
MAX_SECRET = 200
# Where a Slack incoming webhook may point. Tests (and an operator's chat proxy) pass their own.
SLACK_PREFIXES: tuple[str, ...] = ("https://hooks.slack.com/",)
DEFAULT_LABELS = {
    ContactKind.EMAIL: "Email",
    ContactKind.SLACK: "Slack",
    ContactKind.WEBHOOK: "Webhook",
    ContactKind.INBOX: "In-app inbox",
}
# A rule's place in its owner's list, delay first, as one cursor position: the delay is at most
# 1440, an id below 2**31, so ``delay * 2**31 + id`` stays under the cursor's 2**63 bound.
_RULE_KEY = 2**31


# -- masking ---------------------------------------------------------------------------------------
def mask_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/abcd1234`` as ``https://hooks.slack.com/…/1234``:
    the host, to tell methods apart, and four characters of a path that is a secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    tail = rest[-4:] if len(rest) >= 12 else ""
    return f"{parts.scheme}://{host}/…/{tail}" if tail else f"{parts.scheme}://{host}/…"


# -- reading ---------------------------------------------------------------------------------------
def methods_of(session: Session, user_id: int) -> list[ContactMethod]:
    """Every contact method of the person, oldest first."""
    return list(
        session.scalars(
            sa.select(ContactMethod)
            .where(ContactMethod.user_id == user_id)
            .order_by(ContactMethod.id)
        )
    )


def rules_of(session: Session, user_id: int) -> list[tuple[NotificationRule, ContactMethod]]:
    """The person's notification rules with their methods, soonest first."""
    rows = session.execute(
        sa.select(NotificationRule, ContactMethod)
        .join(ContactMethod, ContactMethod.id == NotificationRule.contact_method_id)
        .where(NotificationRule.user_id == user_id)
        .order_by(NotificationRule.delay_minutes, NotificationRule.id)
    ).tuples()
    return list(rows.all())


def effective_rules(session: Session, user_id: int) -> list[tuple[int, ContactMethod | None]]:
    """``(delay_minutes, method)`` in the order a page reaches the person; None is the in-app
    inbox. With no rules: the inbox at once, then every email method at once. With rules: those,
    and the inbox at once unless a rule already uses an inbox method."""
    rules = rules_of(session, user_id)
    if not rules:
        emails = [m for m in methods_of(session, user_id) if m.kind == ContactKind.EMAIL.value]
        return [(0, None), *((0, method) for method in emails)]
    chosen: list[tuple[int, ContactMethod | None]] = [
        (rule.delay_minutes, method) for rule, method in rules
    ]
    if not any(method.kind == ContactKind.INBOX.value for _, method in rules):
        chosen.insert(0, (0, None))
    return chosen


def get_method(*, session: Session, method_id: int) -> ContactMethod:
    method = session.get(ContactMethod, method_id)
    if method is None:
        raise NotFound(f"no contact method {method_id}")
    return method


def list_methods(
    *, session: Session, user_id: int, after_id: int | None, limit: int
) -> list[ContactMethod]:
    """The person's methods in id order after a cursor's position."""
    query = sa.select(ContactMethod).where(ContactMethod.user_id == user_id)
    return list(session.scalars(keyset(query, ContactMethod.id, position=after_id, limit=limit)))


def rule_position(rule: NotificationRule) -> int:
    """The cursor position of a rule in its owner's list (delay, then id)."""
    return rule.delay_minutes * _RULE_KEY + rule.id


def list_rules(
    *, session: Session, user_id: int, after: int | None, limit: int
) -> list[tuple[NotificationRule, ContactMethod]]:
    """The person's rules soonest first, after a cursor's position (:func:`rule_position`)."""
    query = (
        sa.select(NotificationRule, ContactMethod)
        .join(ContactMethod, ContactMethod.id == NotificationRule.contact_method_id)
        .where(NotificationRule.user_id == user_id)
        .order_by(NotificationRule.delay_minutes, NotificationRule.id)
        .limit(limit)
    )
    if after:
        delay, rule_id = divmod(min(after, MAX_ID), _RULE_KEY)
        query = query.where(
            sa.or_(
                NotificationRule.delay_minutes > delay,
                sa.and_(NotificationRule.delay_minutes == delay, NotificationRule.id > rule_id),
            )
        )
    return list(session.execute(query).tuples().all())


def read_method(method: ContactMethod) -> dict[str, Any]:
    """The method as the API answers it: never its secrets, only their hint."""
    return {
        "id": method.id,
        "user_id": method.user_id,
        "kind": method.kind,
        "label": method.label,
        "hint": method.address_hint,
        "signed": method.secret_encrypted is not None,
        "created_at": method.created_at,
    }


def read_rule(rule: NotificationRule, method: ContactMethod) -> dict[str, Any]:
    return {
        "id": rule.id,
        "contact_method_id": rule.contact_method_id,
        "delay_minutes": rule.delay_minutes,
        "contact_method": read_method(method),
        "created_at": rule.created_at,
    }


def method_snapshot(method: ContactMethod) -> dict[str, Any]:
    """What the audit log keeps of a method: the hint, never the address or key behind it."""
    return {
        "user_id": method.user_id,
        "kind": method.kind,
        "label": method.label,
        "hint": method.address_hint,
    }


# -- authorization ---------------------------------------------------------------------------------
def may_manage(actor: Actor, user_id: int) -> bool:
    """A person manages their own contact methods and rules; an admin anyone's."""
    return actor.user_id == user_id or actor.role == Role.ADMIN.value


def require_manage(actor: Actor, user_id: int) -> None:
    if not may_manage(actor, user_id):
        raise Forbidden("only the person themself or an admin may change how they are notified")


def _owned_method(session: Session, actor: Actor, user_id: int, method_id: int) -> ContactMethod:
    require_manage(actor, user_id)
    method = get_method(session=session, method_id=method_id)
    if method.user_id != user_id:
        raise Forbidden("this contact method is someone else's")
    return method


# -- validation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Address:
    stored: str  # clear for email, encrypted for Slack and webhooks
    hint: str


def _check_email(address: str | None) -> _Address:
    if not address:
        raise ValidationFailed.one("body.address", "give the email address to send to")
    try:
        checked = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationFailed.one("body.address", f"not a valid email address: {exc}") from exc
    normalized = checked.normalized
    if not has_email(normalized):
        raise ValidationFailed.one("body.address", "a placeholder address is never delivered")
    return _Address(normalized, normalized)


def _check_slack(address: str | None, box: SecretBox, slack_prefixes: Sequence[str]) -> _Address:
    if not address:
        raise ValidationFailed.one("body.address", "give the Slack incoming-webhook URL")
    rests = [address[len(prefix) :] for prefix in slack_prefixes if address.startswith(prefix)]
    if not any(re.fullmatch(SLACK_PATH, rest) for rest in rests):
        raise ValidationFailed.one(
            "body.address",
            "must be a Slack incoming-webhook URL (https://hooks.slack.com/services/…)",
        )
    return _Address(box.encrypt(address), mask_url(address))


def _check_webhook(address: str | None, box: SecretBox, policy: outbound.Policy) -> _Address:
    if not address:
        raise ValidationFailed.one("body.address", "give the URL to post notifications to")
    if not re.fullmatch(URL_PATTERN, address):
        raise ValidationFailed.one(
            "body.address",
            "must be an absolute http or https URL of printable characters, without "
            "credentials (put those in the signing key)",
        )
    webhooks.check_url(address, "body.address", policy)
    return _Address(box.encrypt(address), mask_url(address))


def _check_address(
    kind: str,
    address: str | None,
    *,
    box: SecretBox,
    policy: outbound.Policy,
    slack_prefixes: Sequence[str],
) -> _Address:
    address = address.strip() if address is not None else None
    if kind == ContactKind.EMAIL.value:
        return _check_email(address)
    if kind == ContactKind.SLACK.value:
        return _check_slack(address, box, slack_prefixes)
    if kind == ContactKind.WEBHOOK.value:
        return _check_webhook(address, box, policy)
    if address is not None:
        raise ValidationFailed.one("body.address", "the in-app inbox takes no address")
    return _Address("", "in-app inbox")


def _check_secret(secret: str | None) -> str:
    if not secret or not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise ValidationFailed.one(
            "body.secret",
            f"give the signing key deliveries are signed with, {MIN_SECRET} to {MAX_SECRET} "
            "characters",
        )
    return secret


def _check_label(label: str, kind: str) -> str:
    label = label.strip()
    if len(label) > 100:
        raise ValidationFailed.one("body.label", "must be at most 100 characters")
    return label or DEFAULT_LABELS[ContactKind(kind)]


def _count(
    session: Session, model: type[ContactMethod] | type[NotificationRule], user_id: int
) -> int:
    """How many methods (or rules) the person has."""
    query = sa.select(sa.func.count()).select_from(model).where(model.user_id == user_id)
    return int(session.scalar(query) or 0)


# -- contact methods -------------------------------------------------------------------------------
def create_method(
    *,
    session: Session,
    actor: Actor,
    user_id: int,
    kind: str,
    box: SecretBox,
    address: str | None = None,
    label: str = "",
    secret: str | None = None,
    policy: outbound.Policy | None = None,
    slack_prefixes: Sequence[str] = SLACK_PREFIXES,
) -> ContactMethod:
    """Add a way to reach the person. Webhooks need ``secret``, the key deliveries are signed
    with (HMAC-SHA256, as the outgoing event webhooks)."""
    require_manage(actor, user_id)
    if people.find_user(session=session, user_id=user_id) is None:
        raise NotFound(f"no user with id {user_id}")
    if kind not in {k.value for k in ContactKind}:
        raise ValidationFailed.one(
            "body.kind", f"must be one of {', '.join(k.value for k in ContactKind)}"
        )
    if _count(session, ContactMethod, user_id) >= MAX_METHODS:
        raise Conflict(f"a person has at most {MAX_METHODS} contact methods; remove one first")
    checked = _check_address(
        kind,
        address,
        box=box,
        policy=policy or outbound.Policy.from_settings(get_settings()),
        slack_prefixes=slack_prefixes,
    )
    if kind != ContactKind.WEBHOOK.value and secret is not None:
        raise ValidationFailed.one("body.secret", "only webhooks are signed")
    secret_encrypted = (
        box.encrypt(_check_secret(secret)) if kind == ContactKind.WEBHOOK.value else None
    )
    _refuse_duplicate(session, user_id, kind, checked)
    method = ContactMethod(
        user_id=user_id,
        kind=kind,
        label=_check_label(label, kind),
        address=checked.stored,
        address_hint=checked.hint,
        secret_encrypted=secret_encrypted,
    )
    session.add(method)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="contact_method.create",
        object_type=METHOD_TYPE,
        object_id=method.id,
        after=method_snapshot(method),
    )
    return method


def _refuse_duplicate(
    session: Session, user_id: int, kind: str, checked: _Address, method_id: int | None = None
) -> None:
    """One inbox method a person, and an email address once (encrypted URLs cannot be
    compared, and two Slack channels with one hint are not necessarily one)."""
    if kind not in {ContactKind.INBOX.value, ContactKind.EMAIL.value}:
        return
    query = sa.select(ContactMethod.id).where(
        ContactMethod.user_id == user_id, ContactMethod.kind == kind
    )
    if kind == ContactKind.EMAIL.value:
        # Mailboxes differing in case only are one in practice, whatever RFC 5321 allows.
        query = query.where(sa.func.lower(ContactMethod.address) == checked.stored.lower())
    clash = session.scalar(query.limit(1))
    if clash is not None and clash != method_id:
        what = "the in-app inbox" if kind == ContactKind.INBOX.value else checked.hint
        raise Conflict(
            f"you have {what} as a contact method already",
            errors=[FieldError("body.address", "already one of your contact methods")],
        )


def update_method(
    *,
    session: Session,
    actor: Actor,
    user_id: int,
    method_id: int,
    box: SecretBox,
    label: str | None = None,
    address: str | None = None,
    secret: str | None = None,
    policy: outbound.Policy | None = None,
    slack_prefixes: Sequence[str] = SLACK_PREFIXES,
) -> ContactMethod:
    """Change a method's label, address or signing key; its kind stays."""
    method = _owned_method(session, actor, user_id, method_id)
    before = method_snapshot(method)
    checked: _Address | None = None
    if address is not None:
        checked = _check_address(
            method.kind,
            address,
            box=box,
            policy=policy or outbound.Policy.from_settings(get_settings()),
            slack_prefixes=slack_prefixes,
        )
        _refuse_duplicate(session, user_id, method.kind, checked, method.id)
    if secret is not None and method.kind != ContactKind.WEBHOOK.value:
        raise ValidationFailed.one("body.secret", "only webhooks are signed")
    new_secret = _check_secret(secret) if secret is not None else None
    new_label = _check_label(label, method.kind) if label is not None else None
    if checked is not None:
        method.address, method.address_hint = checked.stored, checked.hint
    if new_secret is not None:
        method.secret_encrypted = box.encrypt(new_secret)
    if new_label is not None:
        method.label = new_label
    session.flush()
    after = method_snapshot(method)
    if checked is not None and after["hint"] == before["hint"]:
        before["address"], after["address"] = "old", "new"  # the hint alone would hide it
    if new_secret is not None:
        before["signing_key"], after["signing_key"] = "old", "new"
    if after != before:
        audit.record(
            session=session,
            actor=actor,
            action="contact_method.update",
            object_type=METHOD_TYPE,
            object_id=method.id,
            before=before,
            after=after,
        )
    return method


def delete_method(*, session: Session, actor: Actor, user_id: int, method_id: int) -> None:
    """Remove a method and the rules that use it."""
    method = _owned_method(session, actor, user_id, method_id)
    before = method_snapshot(method)
    removed = session.execute(
        sa.delete(NotificationRule).where(NotificationRule.contact_method_id == method.id)
    )
    session.delete(method)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="contact_method.delete",
        object_type=METHOD_TYPE,
        object_id=method_id,
        before={**before, "rules": int(getattr(removed, "rowcount", 0) or 0)},
    )


def send_test(
    *,
    session: Session,
    actor: Actor,
    user_id: int,
    method_id: int,
    settings: Settings,
    box: SecretBox,
) -> channels.ChannelError | str:
    """Send a test notification through the method now; the outcome (what was done, or the
    channel's error) is audited and answered either way."""
    method = _owned_method(session, actor, user_id, method_id)
    note = channels.test_notification(settings, method)
    outcome: channels.ChannelError | str
    try:
        outcome = channels.send(method, user_id, note, session=session, settings=settings, box=box)
    except channels.ChannelError as exc:
        outcome = exc
    audit.record(
        session=session,
        actor=actor,
        action="contact_method.test",
        object_type=METHOD_TYPE,
        object_id=method.id,
        after={
            "hint": method.address_hint,
            "result": outcome if isinstance(outcome, str) else f"failed: {outcome.reason}",
        },
    )
    return outcome


# -- notification rules ----------------------------------------------------------------------------
def create_rule(
    *,
    session: Session,
    actor: Actor,
    user_id: int,
    contact_method_id: int,
    delay_minutes: int = 0,
) -> NotificationRule:
    """Add "after ``delay_minutes``, by this method" (one of the person's own methods)."""
    require_manage(actor, user_id)
    method = session.get(ContactMethod, contact_method_id)
    if method is None or method.user_id != user_id:
        raise ValidationFailed.one(
            "body.contact_method_id", f"{contact_method_id} is not one of your contact methods"
        )
    if isinstance(delay_minutes, bool) or not 0 <= delay_minutes <= MAX_DELAY_MINUTES:
        raise ValidationFailed.one(
            "body.delay_minutes", f"must be between 0 and {MAX_DELAY_MINUTES} minutes"
        )
    if _count(session, NotificationRule, user_id) >= MAX_RULES:
        raise Conflict(f"a person has at most {MAX_RULES} notification rules; remove one first")
    clash = session.scalar(
        sa.select(NotificationRule.id).where(
            NotificationRule.contact_method_id == method.id,
            NotificationRule.delay_minutes == delay_minutes,
        )
    )
    if clash is not None:
        raise Conflict(
            f"rule {clash} already uses this method after {delay_minutes} minutes",
            errors=[FieldError("body.delay_minutes", "the same method at the same delay")],
        )
    rule = NotificationRule(
        user_id=user_id, contact_method_id=method.id, delay_minutes=delay_minutes
    )
    session.add(rule)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="notification_rule.create",
        object_type=RULE_TYPE,
        object_id=rule.id,
        after=_rule_snapshot(rule, method),
    )
    return rule


def _rule_snapshot(rule: NotificationRule, method: ContactMethod) -> dict[str, Any]:
    return {
        "user_id": rule.user_id,
        "contact_method_id": method.id,
        "method": f"{method.kind}: {method.address_hint}",
        "delay_minutes": rule.delay_minutes,
    }


def delete_rule(*, session: Session, actor: Actor, user_id: int, rule_id: int) -> None:
    require_manage(actor, user_id)
    rule = session.get(NotificationRule, rule_id)
    if rule is None:
        raise NotFound(f"no notification rule {rule_id}")
    if rule.user_id != user_id:
        raise Forbidden("this notification rule is someone else's")
    method = get_method(session=session, method_id=rule.contact_method_id)
    before = _rule_snapshot(rule, method)
    session.delete(rule)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="notification_rule.delete",
        object_type=RULE_TYPE,
        object_id=rule_id,
        before=before,
    )
