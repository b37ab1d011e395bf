"""Measuring SLOs through the Prometheus HTTP API.

``measure_for(settings)`` gives the evaluation run a function that asks Prometheus, with
instant queries at ``now`` (``GET /api/v1/query``), for the good and total events of an SLO over
its window and over each burn-rate lookback (5m … 3d). The SLI's queries may hold Sloth's
``{{.window}}`` placeholder; it is replaced by each range in Sloth's spelling (``5m``, ``1d``,
``29d23h59m12s`` for a window that began that long ago):

    measure = measure_for(settings)      # None without LAMPLIGHTER_PROMETHEUS_URL
    measured = measure(slo, window_start, now, BURN_WINDOWS)
    measured.window                       # Counts(good=97_912.0, total=98_000.0)
    measured.no_data                      # or why there is nothing to count

What each SLI kind asks:

- ``ratio``: Sloth's queries are rates (``sum(rate(x[{{.window}}]))``), so a count is the
  value times the seconds of the range. A ``bad_query`` gives the bad events and
  good = total - bad (never below 0).
- ``latency``: ``sum(rate(<metric>_bucket{<selector>,le="<threshold>"}[w]))`` are the good ones,
  ``sum(rate(<metric>_count{<selector>}[w]))`` all of them, again times the seconds. The
  threshold is written as Go writes a float (``0.5``, ``1``), as the Go client's ``le`` labels are.
- ``raw``: the error ratio itself; only the ratio is known (``Counts(1 - r, 1, ratio_only)``).
- ``threshold``: good and total *minutes*, by subqueries at a 1-minute step:
  ``sum_over_time(((<query>) <op> bool <value>)[w:1m])`` over ``count_over_time((<query>)[w:1m])``.

A query error, a non-success answer, an unreachable server, a timeout, NaN or an empty result
makes the SLO ``no data`` with a reason naming the query and the error; it never counts as good
or bad. After a connection failure the rest of the run answers ``no data`` at once, so one
Prometheus that is down costs one timeout per evaluation, not one per query.

Every request goes through the outbound policy's client (:mod:`lamplighter.core.outbound`).
The Prometheus URL is the operator's own setting and usually internal (``127.0.0.1:9090``,
a cluster service), so the policy used here additionally allows exactly the addresses the
configured host resolves to when the run starts; every other internal address stays refused,
and cloud metadata addresses are refused even if the host resolves to one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from lamplighter.core import outbound
from lamplighter.slo.evaluate import Counts, Measured, PrometheusMeasure
from lamplighter.slo.models import Slo
from lamplighter.slo.sloth import duration, number, render_window

QUERY_PATH = "/api/v1/query"
OPERATORS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
SHOWN_QUERY_CHARS = 200  # a reason names the query, cut to stay readable in a table cell


class QueryFailed(Exception):
    """One query could not give a number; ``str()`` is the reason shown on the SLO."""


class Unreachable(QueryFailed):
    """Prometheus could not be reached at all: the rest of the run skips it."""


def measure_for(
    settings: Any, *, transport: httpx.BaseTransport | None = None
) -> PrometheusMeasure | None:
    """The measuring function for ``settings``; None when no Prometheus is configured.
    ``transport`` replaces the network (tests)."""
    url = str(getattr(settings, "prometheus_url", "") or "").rstrip("/")
    if not url:
        return None
    token = getattr(settings, "prometheus_token", None)
    return PrometheusClient(
        base_url=url,
        policy=prometheus_policy(settings, url),
        timeout_s=float(getattr(settings, "prometheus_timeout_s", 10.0)),
        token=token.get_secret_value() if token is not None else None,
        transport=transport,
    )


def prometheus_policy(settings: Any, url: str) -> outbound.Policy:
    """The operator's outbound policy, plus exactly the addresses of the Prometheus host."""
    base = outbound.parse_networks(str(getattr(settings, "outbound_allow_internal", "") or ""))
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses: list[outbound.IPAddress] = []
    literal = outbound.literal_address(host) if host else None
    if literal is not None:
        addresses = [literal]
    elif host:
        try:
            answers = outbound.RESOLVER(host, port)
        except OSError:
            answers = []  # the client says "cannot resolve" when it tries to connect
        addresses = [a for a in (outbound.literal_address(x) for x in answers) if a is not None]
    # Policy.refusal checks metadata addresses before the allowed ranges, so allowing one
    # here would still refuse it; leave them out all the same.
    own = tuple(
        ipaddress.ip_network(address)
        for address in addresses
        if address not in outbound.METADATA_ADDRESSES
    )
    return outbound.Policy(allow_internal=base + own)


@dataclass(frozen=True)
class _Range:
    name: str  # Sloth's spelling, what {{.window}} becomes
    seconds: int


class PrometheusClient:
    """Asks one Prometheus for SLOs' counts during one evaluation run (see the module doc)."""

    def __init__(
        self,
        *,
        base_url: str,
        policy: outbound.Policy,
        timeout_s: float,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.policy = policy
        self.timeout_s = timeout_s
        self.token = token
        self.transport = transport
        self.unreachable: str | None = None  # set by the first connection failure of the run
        self.requests = 0

    def __call__(
        self,
        slo: Slo,
        window_start: dt.datetime,
        now: dt.datetime,
        lookbacks: Sequence[dt.timedelta],
    ) -> Measured:
        if self.unreachable is not None:
            return Measured(no_data=f"{self.unreachable} (not asked again in this run)")
        window_seconds = int((now - window_start).total_seconds())
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with outbound.client(
                self.policy, timeout_s=self.timeout_s, transport=self.transport
            ) as http:
                http.headers.update(headers)
                ask = _Asker(self, http, now)
                window = (
                    ask.counts(
                        slo.sli,
                        _Range(duration(dt.timedelta(seconds=window_seconds)), window_seconds),
                    )
                    if window_seconds > 0
                    else Counts(0.0, 0.0)
                )
                found = {
                    lookback: ask.counts(
                        slo.sli, _Range(duration(lookback), int(lookback.total_seconds()))
                    )
                    for lookback in lookbacks
                }
        except Unreachable as exc:
            self.unreachable = str(exc)
            return Measured(no_data=str(exc))
        except QueryFailed as exc:
            return Measured(no_data=str(exc))
        return Measured(window=window, lookbacks=found)


class _Asker:
    def __init__(self, owner: PrometheusClient, http: httpx.Client, now: dt.datetime) -> None:
        self.owner = owner
        self.http = http
        self.time = f"{now.timestamp():.3f}"

    def counts(self, sli: dict[str, Any], window: _Range) -> Counts:
        kind = sli.get("kind", "ratio")
        w = window.name
        if kind == "ratio":
            total = self.value(render_window(sli["total_query"], w)) * window.seconds
            if sli.get("bad_query"):
                bad = self.value(render_window(sli["bad_query"], w)) * window.seconds
                return Counts(good=max(0.0, total - bad), total=total)
            good = self.value(render_window(sli["good_query"], w)) * window.seconds
            return Counts(good=min(good, total), total=total)
        if kind == "latency":
            good_query, total_query = latency_queries(sli, w)
            total = self.value(total_query) * window.seconds
            good = self.value(good_query) * window.seconds
            return Counts(good=min(good, total), total=total)
        if kind == "raw":
            ratio = self.value(render_window(sli["error_ratio_query"], w))
            return Counts(good=1.0 - ratio, total=1.0, ratio_only=True)
        if kind == "threshold":
            good_query, total_query = threshold_queries(sli, w)
            total = self.value(total_query)
            good = self.value(good_query)
            return Counts(good=min(good, total), total=total)
        raise QueryFailed(f"an SLI of kind {kind!r} cannot be measured through Prometheus")

    def value(self, query: str) -> float:
        """The query's value at ``now``: the sum over the series it returns."""
        shown = query if len(query) <= SHOWN_QUERY_CHARS else query[:SHOWN_QUERY_CHARS] + "…"
        where = self.owner.base_url
        self.owner.requests += 1
        try:
            # ``timeout`` bounds the user's PromQL on Prometheus too, not only our wait for it.
            params = {"query": query, "time": self.time, "timeout": f"{self.owner.timeout_s:g}s"}
            response = self.http.get(where + QUERY_PATH, params=params)
        except outbound.Refused as exc:
            raise Unreachable(f"Prometheus at {where}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise Unreachable(
                f"Prometheus at {where} did not answer within {self.owner.timeout_s:g} s "
                f"(query {shown}): {type(exc).__name__}"
            ) from exc
        except (httpx.TransportError, httpcore.ConnectError) as exc:
            raise Unreachable(
                f"Prometheus at {where} is unreachable: {exc or type(exc).__name__}"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise QueryFailed(
                f"query {shown} failed: HTTP {response.status_code} without a Prometheus answer"
            )
        if response.status_code != 200 or body.get("status") != "success":
            error = body.get("error") or f"status {body.get('status')!r}"
            kind = body.get("errorType")
            raise QueryFailed(
                f"query {shown} failed: HTTP {response.status_code}"
                + (f", {kind}" if kind else "")
                + f": {error}"
            )
        data = body.get("data") or {}
        result_type, result = data.get("resultType"), data.get("result")
        samples: list[Any]
        if result_type in ("scalar", "string"):
            samples = [result]
        elif result_type == "vector" and isinstance(result, list):
            samples = [series.get("value") for series in result if isinstance(series, dict)]
        else:
            raise QueryFailed(f"query {shown} gave a {result_type} result, not a number")
        if not samples:
            raise QueryFailed(f"query {shown} returned no series")
        total = 0.0
        for sample in samples:
            try:
                number = float(sample[1])
            except (TypeError, ValueError, IndexError) as exc:
                raise QueryFailed(f"query {shown} returned {sample!r}, not a number") from exc
            if not math.isfinite(number):
                raise QueryFailed(f"query {shown} returned {sample[1]} (no traffic to divide by?)")
            total += number
        return total


def latency_queries(sli: dict[str, Any], window: str) -> tuple[str, str]:
    """(good, total) rate queries of a latency SLI over ``window``."""
    metric, selector = sli["metric"], str(sli.get("selector") or "").strip().strip(",")
    le = f'le="{number(float(sli["threshold_s"]))}"'
    bucket_matchers = f"{selector},{le}" if selector else le
    good = f"sum(rate({metric}_bucket{{{bucket_matchers}}}[{window}]))"
    total = f"sum(rate({metric}_count{{{selector}}}[{window}]))"
    return good, total


def threshold_queries(sli: dict[str, Any], window: str) -> tuple[str, str]:
    """(good minutes, total minutes) subqueries of a threshold SLI over ``window``."""
    query = render_window(sli["query"], window)
    op = OPERATORS[sli["op"]]
    value = number(float(sli["value"]))
    good = f"sum_over_time((({query}) {op} bool {value})[{window}:1m])"
    total = f"count_over_time(({query})[{window}:1m])"
    return good, total
