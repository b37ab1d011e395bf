"""PagerDuty Events API v2 compatible events (``POST /v2/enqueue``, FORMATS.md).

Validated as PagerDuty documents it, so that anything that sends to PagerDuty can send here by
changing the URL: ``routing_key`` (the 32-character integration key), ``event_action``
(trigger | acknowledge | resolve), ``dedup_key`` (≤ 255; generated on a trigger without one,
required for acknowledge and resolve), ``payload`` (``summary`` ≤ 1024, ``source`` and
``severity`` required on trigger; optional ``timestamp``, ``component``, ``group``, ``class``,
``custom_details``), ``client``, ``client_url``, ``links[]`` and ``images[]``. Bodies over
512 KB are refused with 413.

Responses use PagerDuty's shapes (:func:`success_body`, :func:`error_body`): the 400 body's
``status`` ("invalid event"), ``message`` ("Event object is invalid") and the wording of
"Length of 'routing_key' is incorrect (should be 32 characters)" are PagerDuty's own, as its
developer documentation shows them; the other error texts follow that pattern.

On acknowledge and resolve PagerDuty ignores ``payload``; so does this parser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from lamplighter.alerting.intake import (
    ACTIONS,
    DEFAULT_SEVERITY,
    MAX_DEDUP_KEY_CHARS,
    MAX_LINKS,
    MAX_SUMMARY_CHARS,
    SEVERITIES,
    FormatError,
    IncomingAlert,
    PayloadTooLarge,
    Severity,
    parse_timestamp,
    runbook_from,
)
from lamplighter.core.errors import FieldError

MAX_PAYLOAD_BYTES = 512 * 1024  # PagerDuty's documented limit
ROUTING_KEY_CHARS = 32
MAX_TEXT_CHARS = 1024  # source, component, group, class, client, hrefs


def parse_event(body: bytes, *, generate_key: Callable[[], str]) -> tuple[str, IncomingAlert]:
    """Parse one event into (routing_key, alert); raise FormatError with PagerDuty's texts.

    ``generate_key`` makes the dedup key of a trigger sent without one (PagerDuty uses a UUID)."""
    if len(body) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            [("body", f"Event is too large ({len(body):,} bytes; the limit is 512 KB)")]
        )
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise FormatError([("body", "Malformed JSON: the body is not a JSON document")]) from None
    if not isinstance(event, dict):
        raise FormatError([("body", "Event object is invalid: the body must be a JSON object")])
    errors: list[tuple[str, str]] = []

    routing_key = event.get("routing_key")
    if _blank(routing_key):
        errors.append(("routing_key", "'routing_key' is missing or blank"))
    elif not isinstance(routing_key, str):
        errors.append(("routing_key", "'routing_key' must be a string"))
    elif len(routing_key) != ROUTING_KEY_CHARS:
        errors.append(
            ("routing_key", "Length of 'routing_key' is incorrect (should be 32 characters)")
        )

    action = event.get("event_action")
    if _blank(action):
        errors.append(("event_action", "'event_action' is missing or blank"))
    elif action not in ACTIONS:
        errors.append(
            (
                "event_action",
                "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)",
            )
        )

    dedup_key = event.get("dedup_key")
    if _blank(dedup_key):
        dedup_key = None
        if action in ("acknowledge", "resolve"):
            errors.append(("dedup_key", f"'dedup_key' is required for event_action {action}"))
    elif not isinstance(dedup_key, str):
        errors.append(("dedup_key", "'dedup_key' must be a string"))
    elif len(dedup_key) > MAX_DEDUP_KEY_CHARS:
        errors.append(
            ("dedup_key", "Length of 'dedup_key' is incorrect (should be at most 255 characters)")
        )

    client = _text(event, "client", "client", errors)
    client_url = _text(event, "client_url", "client_url", errors)
    links = _links(event.get("links"), errors)
    images = _images(event.get("images"), errors)

    payload = event.get("payload")
    trigger = action == "trigger"
    summary, source, severity = "", "", DEFAULT_SEVERITY
    labels: dict[str, str] = {}
    details: dict[str, Any] = {}
    starts_at = None
    if trigger and not isinstance(payload, dict):
        problem = "missing" if payload is None else "invalid (must be an object)"
        errors.append(("payload", f"'payload' is {problem}"))
    elif trigger and isinstance(payload, dict):
        summary = _required_text(payload, "summary", errors, MAX_SUMMARY_CHARS)
        source = _required_text(payload, "source", errors, MAX_TEXT_CHARS)
        raw_severity = payload.get("severity")
        if _blank(raw_severity):
            errors.append(("payload.severity", "'payload.severity' is missing or blank"))
        elif raw_severity not in SEVERITIES:
            errors.append(
                (
                    "payload.severity",
                    "'payload.severity' is invalid "
                    "(must be one of: critical, error, warning, info)",
                )
            )
        else:
            severity = _severity(raw_severity)
        timestamp = payload.get("timestamp")
        if timestamp is not None:
            try:
                if not isinstance(timestamp, str):
                    raise ValueError(timestamp)
                starts_at = parse_timestamp(timestamp)
            except ValueError:
                errors.append(
                    (
                        "payload.timestamp",
                        "'payload.timestamp' is invalid (must be an ISO 8601 timestamp)",
                    )
                )
        for name in ("component", "group", "class"):
            value = _text(payload, name, f"payload.{name}", errors)
            if value:
                labels[name] = value
        if "custom_details" in payload and payload["custom_details"] is not None:
            custom = payload["custom_details"]
            # Any JSON, as PagerDuty takes it; bounded by the 512 KB of the whole event.
            details = custom if isinstance(custom, dict) else {"details": custom}
    if client:
        labels["client"] = client

    if errors:
        raise FormatError(errors, detail="Event object is invalid")
    assert isinstance(routing_key, str)
    final_action = next(known for known in ACTIONS if known == action)
    if dedup_key is None:
        dedup_key = generate_key()
    runbook = runbook_from(details) or next(
        (href for href, text in links if "runbook" in text.lower()), None
    )
    return routing_key, IncomingAlert(
        action=final_action,
        dedup_key=dedup_key,
        summary=summary,
        severity=severity,
        source=source,
        received_format="pagerduty",
        labels=labels,
        starts_at=starts_at,
        links=links,
        images=images,
        runbook_url=runbook,
        source_url=client_url,
        details=details,
    )


def success_body(dedup_key: str) -> dict[str, str]:
    """PagerDuty's 202 body."""
    return {"status": "success", "message": "Event processed", "dedup_key": dedup_key}


def error_body(errors: Sequence[FieldError | tuple[str, str]]) -> dict[str, Any]:
    """PagerDuty's 400 body: its status and message, and one text per wrong field."""
    reasons = [e.reason if isinstance(e, FieldError) else e[1] for e in errors]
    return {"status": "invalid event", "message": "Event object is invalid", "errors": reasons}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _severity(value: str) -> Severity:
    return next((known for known in SEVERITIES if known == value), DEFAULT_SEVERITY)


def _required_text(
    payload: dict[str, Any], name: str, errors: list[tuple[str, str]], limit: int
) -> str:
    path = f"payload.{name}"
    value = payload.get(name)
    if _blank(value):
        errors.append((path, f"'{path}' is missing or blank"))
    elif not isinstance(value, str):
        errors.append((path, f"'{path}' must be a string"))
    elif len(value) > limit:
        errors.append(
            (path, f"Length of '{path}' is incorrect (should be at most {limit} characters)")
        )
    else:
        return value
    return ""


def _text(data: dict[str, Any], name: str, path: str, errors: list[tuple[str, str]]) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append((path, f"'{path}' must be a string"))
        return None
    if len(value) > MAX_TEXT_CHARS:
        errors.append(
            (
                path,
                f"Length of '{path}' is incorrect (should be at most {MAX_TEXT_CHARS} characters)",
            )
        )
        return None
    return value


def _objects(value: Any, name: str, errors: list[tuple[str, str]]) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append((name, f"'{name}' must be a list of objects"))
        return []
    if len(value) > MAX_LINKS:
        errors.append((name, f"'{name}' has {len(value)} entries (at most {MAX_LINKS})"))
        return []
    objects = []
    for index, item in enumerate(value):
        if isinstance(item, dict):
            objects.append(item)
        else:
            errors.append((f"{name}[{index}]", f"'{name}[{index}]' must be an object"))
    return objects


def _links(value: Any, errors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    links = []
    for index, link in enumerate(_objects(value, "links", errors)):
        href = _required_in(link, "href", f"links[{index}]", errors)
        text = _text(link, "text", f"links[{index}].text", errors) or ""
        if href:
            links.append((href, text or href))
    return links


def _images(value: Any, errors: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    images = []
    for index, image in enumerate(_objects(value, "images", errors)):
        src = _required_in(image, "src", f"images[{index}]", errors)
        href = _text(image, "href", f"images[{index}].href", errors) or ""
        alt = _text(image, "alt", f"images[{index}].alt", errors) or ""
        if src:
            images.append((src, href, alt))
    return images


def _required_in(
    item: dict[str, Any], name: str, where: str, errors: list[tuple[str, str]]
) -> str | None:
    path = f"{where}.{name}"
    if _blank(item.get(name)):
        errors.append((path, f"'{path}' is missing or blank"))
        return None
    return _text(item, name, path, errors)
