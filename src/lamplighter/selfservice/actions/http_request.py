"""``http.request``: a call to an internal HTTP API, allowed only to the hosts an operator lists,
never to internal addresses outside ``LAMPLIGHTER_OUTBOUND_ALLOW_INTERNAL``, with an idempotency key per step and
the response (bounded) as the step's output.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from lamplighter.core import outbound
from lamplighter.core.errors import ValidationFailed
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    Ownership,
    StepContext,
    action_error_from,
    parse_model,
    register,
)

MAX_RESPONSE_BYTES = 64 * 1024
Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
_RESERVED_HEADERS = {"host", "idempotency-key", "content-length", "transfer-encoding"}


class HttpCall(ActionInput):
    method: Method = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = Field(default=None, description="Sent as JSON when given.")
    expected_status: list[int] = Field(
        default_factory=list, description="Status codes that count as success; empty = any 2xx."
    )


class HttpRequestInput(HttpCall):
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    compensate: HttpCall | None = Field(
        default=None, description="The request that undoes this one, if anything needs undoing."
    )


class HttpRequestOutput(ActionOutput):
    status: int
    body: str = Field(description=f"The response, at most {MAX_RESPONSE_BYTES} bytes of it.")
    truncated: bool = False
    data: Any = Field(default=None, description="The response parsed as JSON, when it is JSON.")


def http_client(timeout_s: float, policy: outbound.Policy) -> httpx.Client:
    """The outbound policy's client (``core.outbound``); tests swap in one over an
    ``httpx.MockTransport``."""
    return outbound.client(policy, timeout_s=timeout_s)


def check_target(
    url: str, allowlist: str, field: str, policy: outbound.Policy | None = None
) -> None:
    """Refuse a URL the outbound policy refuses (``core.outbound``): outside the allowlist, with
    credentials or dot segments in it, or aimed at an internal or metadata address (names are
    checked again after resolution, when the client connects)."""
    if not outbound.prefixes_of(allowlist):
        raise ActionError(
            f"{field}: http.request may call nothing until LAMPLIGHTER_SELFSERVICE_HTTP_ALLOWLIST "
            "names the allowed URL prefixes",
            field=field,
        )
    try:
        outbound.check_allowed(
            url,
            allowlist,
            field=field,
            setting="LAMPLIGHTER_SELFSERVICE_HTTP_ALLOWLIST",
            policy=policy,
        )
    except ValidationFailed as exc:
        raise action_error_from(exc) from exc


def _check_headers(headers: dict[str, str], field: str) -> None:
    for name in headers:
        if name.strip().lower() in _RESERVED_HEADERS:
            raise ActionError(
                f"{field}.{name}: this header is set by Lamplighter", field=f"{field}.{name}"
            )


def _send(
    call: HttpCall, *, timeout_s: float, key: str, policy: outbound.Policy
) -> tuple[int, bytes, bool, str]:
    headers = {**call.headers, "Idempotency-Key": key, "User-Agent": "Lamplighter-SelfService/1"}
    parts = urlsplit(call.url)
    where = (
        f"{call.method} {parts.scheme}://{parts.netloc}{parts.path}"  # no query: it may hold keys
    )
    try:
        with http_client(timeout_s, policy) as client:
            request = client.build_request(call.method, call.url, headers=headers, json=call.body)
            response = client.send(request, stream=True)
            try:
                content = b""
                truncated = False
                for chunk in response.iter_bytes():
                    content += chunk
                    if len(content) > MAX_RESPONSE_BYTES:
                        content, truncated = content[:MAX_RESPONSE_BYTES], True
                        break
            finally:
                response.close()
    except outbound.Refused as exc:
        raise ActionError(f"{where}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise ActionError(f"{where} timed out after {timeout_s:g} s", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise ActionError(f"{where} failed: {type(exc).__name__}: {exc}", retryable=True) from exc
    return response.status_code, content, truncated, response.headers.get("content-type", "")


def _expected(call: HttpCall, status: int) -> bool:
    return status in call.expected_status if call.expected_status else 200 <= status < 300


@register
class HttpRequestAction(Action):
    """Call an internal API for anything no other action does.

    The URL must be under a prefix of ``LAMPLIGHTER_SELFSERVICE_HTTP_ALLOWLIST`` and may never
    reach link-local or cloud metadata addresses. The request carries ``Idempotency-Key: <run
    key>`` so the API can recognise a second attempt; ``compensate`` is the request that undoes
    it (a 404 or 410 there means nothing is left to undo)::

        - id: dns
          action: http.request
          input:
            method: POST
            url: https://dns.internal.example/api/records
            body: {name: "${{ parameters.name }}", type: CNAME, target: ingress.example.com}
            expected_status: [201]
            compensate:
              method: DELETE
              url: "https://dns.internal.example/api/records/${{ parameters.name }}"
    """

    name = "http.request"
    title = "Call an internal API"
    description = "Send one HTTP request to an allow-listed internal API."
    Input = HttpRequestInput
    Output = HttpRequestOutput
    ownership = Ownership(
        changes={
            "url": "whatever the called API changes: Lamplighter cannot tell its owner, so the "
            "action is high-risk and a template using it is reviewed by the platform team",
        },
    )
    risk = "high"

    def run(self, ctx: StepContext, data: Any) -> HttpRequestOutput:
        data = parse_model(HttpRequestInput, data)
        allowlist = ctx.settings.selfservice_http_allowlist
        policy = outbound.Policy.from_settings(ctx.settings)
        check_target(data.url, allowlist, "url", policy)
        _check_headers(data.headers, "headers")
        if data.compensate is not None:  # refuse now what could not be undone later
            check_target(data.compensate.url, allowlist, "compensate.url", policy)
            _check_headers(data.compensate.headers, "compensate.headers")
        status, content, truncated, content_type = _send(
            data, timeout_s=data.timeout_s, key=ctx.key, policy=policy
        )
        text = content.decode("utf-8", errors="replace")
        ctx.log(f"{data.method} {urlsplit(data.url).path or '/'} answered HTTP {status}")
        if not _expected(data, status):
            wanted = ", ".join(map(str, data.expected_status)) or "2xx"
            raise ActionError(
                f"{data.method} {data.url} answered HTTP {status} (expected {wanted}): {text[:200]}",
                retryable=status >= 500 or status == 429,
            )
        parsed: Any = None
        if not truncated and "json" in content_type.lower() and content:
            try:
                parsed = json.loads(content)
            except ValueError:
                parsed = None
        return HttpRequestOutput(status=status, body=text, truncated=truncated, data=parsed)

    def compensate(self, ctx: StepContext, data: Any, output: Any | None) -> None:
        data = parse_model(HttpRequestInput, data)
        call = data.compensate
        if call is None:
            ctx.log("no compensating request declared; nothing to undo")
            return
        policy = outbound.Policy.from_settings(ctx.settings)
        check_target(call.url, ctx.settings.selfservice_http_allowlist, "compensate.url", policy)
        status, content, _, _ = _send(
            call, timeout_s=data.timeout_s, key=f"{ctx.key}-compensate", policy=policy
        )
        if _expected(call, status):
            ctx.log(f"{call.method} {urlsplit(call.url).path or '/'} answered HTTP {status}")
            return
        if status in (404, 410):
            ctx.log(f"nothing to undo: HTTP {status}")
            return
        raise ActionError(
            f"the compensating {call.method} {call.url} answered HTTP {status}: "
            f"{content[:200].decode('utf-8', errors='replace')}",
            retryable=status >= 500 or status == 429,
        )
