"""The outbound policy: what Lamplighter may send a request to, and the one client that sends it.

Webhook deliveries, the self-service ``http.request`` action and the catalog import's
``--fetch`` all send through ``client()``. A request is allowed when its URL is an absolute
http(s) URL and every address its host resolves to is public: loopback, RFC 1918, CGNAT,
link-local, unique-local, ``0.0.0.0/8``, multicast and reserved addresses are refused, in every
spelling (``127.1``, ``0x7f000001``, ``::ffff:127.0.0.1``, NAT64 ``64:ff9b::7f00:1``, 6to4
``2002:7f00:1::``), unless the operator names their range in
``LAMPLIGHTER_OUTBOUND_ALLOW_INTERNAL``. Cloud metadata addresses are refused even then.

The check happens where the socket is opened (``PolicyBackend.connect_tcp``): the host is
resolved once, every address checked, and the connection made to the checked address, while
the request keeps its Host header and TLS server name. A DNS answer that changes between a
check and the connection (rebinding) therefore cannot reach an internal address. Redirects are
never followed.

Features with an operator allowlist of URL prefixes (``check_allowed``) also require the URL to
lie under one of them.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from lamplighter.core.errors import ValidationFailed
from lamplighter.core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses``: the system resolver, or a fake in tests."""

REFUSED = "refused by the outbound policy"
# Instance metadata services: AWS (and its IPv6 form, ECS task metadata and DNS), GCP, Azure,
# OpenStack and Oracle on 169.254.169.254, Alibaba on 100.100.100.200, Azure's wire server.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.169.253",
        "169.254.170.2",
        "100.100.100.200",
        "168.63.129.16",
        "fd00:ec2::254",
        "fd00:ec2::23",
    )
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data.ec2.internal"})
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class Refused(Exception):
    """The policy refuses this target; ``str()`` says why (without the resolved address)."""


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the OS resolver gives for ``host`` (what a socket would connect to)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]).split("%")[0] for info in infos]


# Tests swap this for a fake (there is no external network in CI); a Policy may take its own.
RESOLVER: Resolver = system_resolver


def literal_address(host: str) -> IPAddress | None:
    """The address a host literal means, parsed as the OS resolver parses it (``inet_aton``:
    ``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1``), or None for a name."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    if not host or not all(c in "0123456789abcdefABCDEFxX." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address spells (mapped, NAT64, 6to4, Teredo, compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64) or int(address) >> 32 == 0xFFFF0000:  # SIIT too
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    if int(address) >> 32 == 0 and int(address) > 0xFFFF:  # deprecated ::a.b.c.d
        return ipaddress.IPv4Address(int(address))
    return None


def parse_networks(ranges: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, fd12::/16"`` as networks; ValueError names a malformed one."""
    return tuple(
        ipaddress.ip_network(r.strip(), strict=False) for r in ranges.split(",") if r.strip()
    )


@dataclass(frozen=True)
class Policy:
    """Which addresses requests may reach. ``allow_internal`` opens named internal ranges."""

    allow_internal: tuple[IPNetwork, ...] = ()
    resolver: Resolver | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> Policy:
        return cls(parse_networks(settings.outbound_allow_internal), resolver)

    def refusal(self, address: IPAddress) -> str | None:
        """Why a request may not reach ``address``, or None when it may."""
        target: IPAddress = address
        if isinstance(address, ipaddress.IPv6Address):
            target = embedded_ipv4(address) or address
        if address in METADATA_ADDRESSES or target in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if any(target in network for network in self.allow_internal):
            return None
        if target.is_global and not (target.is_multicast or target.is_reserved):
            return None
        if target.is_loopback:
            return "a loopback address"
        if target.is_link_local:
            return "a link-local address"
        return "an internal or reserved address"

    def resolve(self, host: str, port: int) -> IPAddress:
        """Resolve ``host`` once, check every address, and return the one to connect to."""
        if host.rstrip(".").lower() in METADATA_NAMES:
            raise Refused(f"{REFUSED}: {host} names a cloud metadata service")
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                answers = (self.resolver or RESOLVER)(host.rstrip("."), port)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            addresses = [a for a in (literal_address(answer) for answer in answers) if a]
            if not addresses:
                raise httpcore.ConnectError(f"cannot resolve {host}")
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                shown = "it is" if literal is not None else f"{host} resolves to"
                raise Refused(f"{REFUSED}: {shown} {reason}")
        return addresses[0]

    def check_url(self, url: str, *, resolve: bool) -> None:
        """Raise Refused unless ``url`` is http(s) and its host is allowed; ``resolve=False``
        checks address literals only (a name is checked when it is connected to)."""
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise Refused(f"{REFUSED}: only absolute http and https URLs")
        host = parts.hostname.rstrip(".").lower()
        if resolve or literal_address(host) is not None or host in METADATA_NAMES:
            self.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))


class PolicyBackend(httpcore.NetworkBackend):
    """Opens a TCP connection only to an address the policy allows, the one it checked."""

    def __init__(self, policy: Policy, inner: httpcore.NetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        address = self.policy.resolve(host, port)
        return self.inner.connect_tcp(
            str(address), port, timeout, local_address=local_address, socket_options=socket_options
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise Refused(f"{REFUSED}: unix sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class PolicyTransport(httpx.HTTPTransport):
    """httpx's transport whose connections go through ``PolicyBackend``. The Host header and
    the TLS server name (SNI, certificate check) stay the URL's host; only the socket's address
    is the checked one."""

    def __init__(
        self, policy: Policy, *, backend: httpcore.NetworkBackend | None = None, verify: Any = True
    ) -> None:
        super().__init__(verify=verify, trust_env=False)
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        # httpx builds its httpcore pool privately; this one differs only in its backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context, network_backend=PolicyBackend(policy, backend)
        )


def client(
    policy: Policy, *, timeout_s: float, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The client every outbound request is sent with: policy-checked, no redirects, no proxy
    from the environment. ``transport`` replaces the network entirely (tests)."""
    return httpx.Client(
        transport=transport or PolicyTransport(policy),
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=False,
    )


def prefixes_of(allowlist: str) -> list[str]:
    return [p.strip() for p in allowlist.split(",") if p.strip()]


def prefix_matches(url: str, prefix: str) -> bool:
    """Same scheme, host and port, and the path at or under the prefix's path."""
    target, allowed = urlsplit(url), urlsplit(prefix)
    if target.scheme.lower() != allowed.scheme.lower() or not allowed.hostname:
        return False
    if target.hostname != allowed.hostname:  # urlsplit lowercases host names
        return False
    default = {"http": 80, "https": 443}.get(allowed.scheme.lower())
    if (target.port or default) != (allowed.port or default):
        return False
    base = allowed.path.rstrip("/")
    return not base or target.path == base or target.path.startswith(base + "/")


def check_allowed(
    url: str, allowlist: str, *, field: str, setting: str, policy: Policy | None = None
) -> None:
    """Raise ValidationFailed (naming ``field``) unless the policy allows a request to ``url``;
    ``setting`` names the allowlist's variable in the message. A name is resolved here for an
    early answer, and checked again when the client connects (that check is the one that
    counts: the answer may change in between)."""
    prefixes = prefixes_of(allowlist)
    if not prefixes:
        raise ValidationFailed.one(
            field, f"nothing may be fetched until {setting} names the allowed URL prefixes"
        )
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed.one(field, "must be an absolute http or https URL")
    try:
        (policy or Policy()).check_url(url, resolve=True)
    except Refused as exc:
        raise ValidationFailed.one(field, str(exc)) from exc
    except httpcore.ConnectError:
        pass  # unresolvable now: the client reports it if it still is when it connects
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed.one(field, "put credentials in headers, not in the URL")
    if any(unquote(segment) in {".", ".."} for segment in parts.path.split("/")):
        raise ValidationFailed.one(field, "'.' and '..' path segments are not allowed")
    if not any(prefix_matches(url, prefix) for prefix in prefixes):
        raise ValidationFailed.one(
            field,
            f"{parts.scheme}://{parts.netloc}{parts.path} is not under an allowed prefix of "
            f"{setting} ({', '.join(prefixes)})",
        )
