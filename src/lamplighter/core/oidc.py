"""Optional OIDC (single sign-on) web login: the authorization code flow with PKCE.

    GET /auth/oidc/login?next=/path        302 to the identity provider (IdP)
    GET /auth/oidc/callback?code=&state=   check the state cookie, exchange the code, validate
                                           the ID token, sign the user in, 303 to ``next``

Between the two requests the flow's secrets (state, nonce, PKCE verifier) and ``next`` live in
the short-lived ``ll_oidc`` cookie, signed with a key derived from the secret key, so the server
keeps nothing. Every outbound request goes through ``TRANSPORT`` so tests can fake the IdP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from lamplighter.core import identity
from lamplighter.core.context import Actor
from lamplighter.core.deps import SESSION_COOKIE, SessionDep, SettingsDep
from lamplighter.core.errors import (
    BadRequest,
    Forbidden,
    LamplighterError,
    NotFound,
    Unauthorized,
)
from lamplighter.core.models import Role, User
from lamplighter.core.settings import Settings

log = logging.getLogger("lamplighter.oidc")
router = APIRouter(include_in_schema=False)

STATE_COOKIE = "ll_oidc"
STATE_COOKIE_PATH = "/auth/oidc"
CALLBACK_PATH = "/auth/oidc/callback"
STATE_TTL_S = 600
METADATA_TTL_S = 300.0
HTTP_TIMEOUT_S = 5.0
CLOCK_SKEW_S = 60
MAX_NEXT_LENGTH = 2000
# Asymmetric algorithms only: never "none", never HS* keyed with the client secret.
ID_TOKEN_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
# Tests and embedders may swap the transport (httpx.MockTransport); None means real network.
TRANSPORT: httpx.BaseTransport | None = None


class IdentityProviderUnavailable(LamplighterError):
    status = 502
    slug = "identity-provider-unavailable"
    title = "Identity provider unavailable"


# -- talking to the identity provider -----------------------------------------------------------
@dataclass(frozen=True)
class Provider:
    """The parts of an IdP's discovery document that the login flow uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]


class _TTLCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl_s, value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_PROVIDERS = _TTLCache(METADATA_TTL_S)
_KEY_SETS = _TTLCache(METADATA_TTL_S)


def clear_caches() -> None:
    """Forget cached discovery documents and signing keys."""
    _PROVIDERS.clear()
    _KEY_SETS.clear()


@contextmanager
def _client() -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=TRANSPORT, timeout=HTTP_TIMEOUT_S, follow_redirects=False
    ) as client:
        yield client


def _unavailable(what: str, reason: str) -> IdentityProviderUnavailable:
    log.warning("identity provider unavailable", extra={"what": what, "reason": reason})
    return IdentityProviderUnavailable(
        f"the identity provider's {what} could not be read ({reason}); try again later"
    )


def _get_json(url: str, what: str) -> dict[str, Any]:
    try:
        with _client() as client:
            response = client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise _unavailable(what, type(exc).__name__) from exc
    if response.status_code != 200:
        raise _unavailable(what, f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise _unavailable(what, "not JSON") from exc
    if not isinstance(body, dict):
        raise _unavailable(what, "not a JSON object")
    return body


def discover(issuer: str) -> Provider:
    """Read the issuer's discovery document, cached for a few minutes."""
    cached: Provider | None = _PROVIDERS.get(issuer)
    if cached is not None:
        return cached
    doc = _get_json(f"{issuer.rstrip('/')}/.well-known/openid-configuration", "discovery document")
    if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise _unavailable(
            "discovery document", f"it names issuer {str(doc.get('issuer'))[:200]!r}"
        )
    fields = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    missing = [name for name in fields if not isinstance(doc.get(name), str) or not doc[name]]
    if missing:
        raise _unavailable("discovery document", f"it lacks {', '.join(missing)}")
    methods = doc.get("token_endpoint_auth_methods_supported")
    provider = Provider(
        issuer=str(doc["issuer"]),
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        token_auth_methods=tuple(str(m) for m in methods) if isinstance(methods, list) else (),
    )
    _PROVIDERS.put(issuer, provider)
    return provider


def _key_set(jwks_uri: str, *, refresh: bool = False) -> KeySet:
    cached: KeySet | None = None if refresh else _KEY_SETS.get(jwks_uri)
    if cached is not None:
        return cached
    doc = _get_json(jwks_uri, "signing keys")
    try:
        keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise _unavailable("signing keys", "no usable key") from exc
    _KEY_SETS.put(jwks_uri, keys)
    return keys


def _token_auth(
    provider: Provider, client_id: str, client_secret: str | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Form fields and headers that authenticate the client at the token endpoint.

    client_secret_basic is the spec's default and preferred; client_secret_post only when the
    provider lists it without basic. Without a secret the client is public and relies on PKCE.
    """
    if client_secret is None:
        return {"client_id": client_id}, {}
    methods = provider.token_auth_methods or ("client_secret_basic",)
    if "client_secret_post" in methods and "client_secret_basic" not in methods:
        return {"client_id": client_id, "client_secret": client_secret}, {}
    # RFC 6749 section 2.3.1: both parts are form-encoded before base64.
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return {}, {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def exchange_code(*, settings: Settings, provider: Provider, code: str, code_verifier: str) -> str:
    """Trade the authorization code for tokens; return the ID token."""
    assert settings.oidc_client_id is not None
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    fields, headers = _token_auth(provider, settings.oidc_client_id, secret)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(settings),
        "code_verifier": code_verifier,
        **fields,
    }
    try:
        with _client() as client:
            response = client.post(
                provider.token_endpoint,
                data=form,
                headers={"Accept": "application/json", **headers},
            )
    except httpx.HTTPError as exc:
        raise _unavailable("token endpoint", type(exc).__name__) from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _unavailable("token endpoint", f"HTTP {response.status_code}, not a JSON object")
    if 400 <= response.status_code < 500:
        error = _printable(body.get("error"), 64) or f"HTTP {response.status_code}"
        log.warning("token endpoint refused the code", extra={"error": error})
        raise Unauthorized(f"the identity provider refused the sign-in ({error}); start again")
    if response.status_code != 200:
        raise _unavailable("token endpoint", f"HTTP {response.status_code}")
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise _unavailable("token endpoint", "the answer has no id_token")
    return id_token


def _refuse(reason: str) -> Unauthorized:
    log.warning("ID token refused", extra={"reason": reason})
    return Unauthorized(f"the identity provider's answer failed validation ({reason}); start again")


def _decode(id_token: str, keys: KeySet) -> jwt.Token:
    return jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)


def validate_id_token(
    *, provider: Provider, client_id: str, id_token: str, nonce: str
) -> dict[str, Any]:
    """Check the ID token's signature, issuer, audience, expiry and nonce; return its claims."""
    try:
        try:
            token = _decode(id_token, _key_set(provider.jwks_uri))
        except InvalidKeyIdError:
            # The provider may have rotated its keys since they were cached.
            token = _decode(id_token, _key_set(provider.jwks_uri, refresh=True))
    except InvalidKeyIdError as exc:
        raise _refuse("signed with an unknown key") from exc
    except (JoseError, ValueError) as exc:
        raise _refuse("bad signature or malformed token") from exc
    claims = jwt.JWTClaimsRegistry(
        leeway=CLOCK_SKEW_S,
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        claims.validate(token.claims)
    except ExpiredTokenError as exc:
        raise _refuse("the token has expired") from exc
    except ClaimError as exc:
        raise _refuse(f"claim {exc.claim!r} is missing or wrong") from exc
    azp = token.claims.get("azp")
    if azp is not None and azp != client_id:
        raise _refuse("claim 'azp' is wrong")
    return token.claims


# -- the state cookie ---------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _state_key(settings: Settings) -> bytes:
    return hmac.new(
        settings.effective_secret_key(), b"lamplighter-oidc-state", hashlib.sha256
    ).digest()


def seal_state(settings: Settings, data: dict[str, Any]) -> str:
    """Serialise the flow's data into a cookie value signed with HMAC-SHA256."""
    payload = _b64(orjson.dumps({**data, "exp": int(time.time()) + STATE_TTL_S}))
    signature = _b64(hmac.new(_state_key(settings), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def open_state(settings: Settings, raw: str | None) -> dict[str, Any] | None:
    """Return the data of a cookie made by ``seal_state``; None if forged, damaged or expired."""
    if not raw or raw.count(".") != 1:
        return None
    payload, signature = raw.split(".")
    expected = _b64(hmac.new(_state_key(settings), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature, expected):
        return None
    try:
        data = orjson.loads(_unb64(payload))
    except ValueError:
        return None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("exp"), int)
        or data["exp"] < time.time()
    ):
        return None
    return data


def safe_next(value: str | None) -> str:
    """Keep ``next`` only when it is a path on this site, so login cannot redirect elsewhere."""
    if (
        not value
        or len(value) > MAX_NEXT_LENGTH
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        return "/"
    return value


def redirect_uri(settings: Settings) -> str:
    return settings.base_url.rstrip("/") + CALLBACK_PATH


def _printable(value: object, limit: int) -> str:
    """IdP-supplied text, reduced to printable ASCII so it cannot smuggle markup or lines."""
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value if 0x20 <= ord(c) < 0x7F and c not in "<>")[:limit]


# -- signing in ---------------------------------------------------------------------------------
def email_of(claims: dict[str, Any]) -> str:
    """The verified email address from the ID token's claims."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise Forbidden(
            "the identity provider sent no email address; ask an admin to check the OIDC scopes"
        )
    if claims.get("email_verified") in (False, "false"):
        raise Forbidden(
            f"the identity provider has not verified {email}; verify it there, then sign in again"
        )
    return email.strip().lower()


def sign_in(
    *, session: Session, claims: dict[str, Any], auto_create: bool, session_hours: int
) -> tuple[User, str]:
    """Find (or, when allowed, create) the user the ID token names and start a web session."""
    email = email_of(claims)
    user = identity.get_user_by_email(session=session, email=email)
    if user is None:  # someone imported without an address, by the name they sign in with
        for claim in ("preferred_username", "nickname"):
            name = claims.get(claim)
            if isinstance(name, str) and name.strip():
                user = identity.claim_address(session=session, name=name, email=email)
                if user is not None:
                    log.info("address set on first OIDC sign-in", extra={"user_id": user.id})
                    break
    if user is None:
        if not auto_create:
            raise Forbidden(f"no Lamplighter account for {email}; ask an admin")
        name = claims.get("name")
        display_name = name.strip()[:200] if isinstance(name, str) and name.strip() else email
        user = identity.create_user(
            session=session,
            actor=Actor.system("oidc"),
            email=email,
            display_name=display_name,
            role=Role.MEMBER.value,
        )
        log.info("user created on first OIDC sign-in", extra={"user_id": user.id})
    if not user.is_active:
        raise Forbidden(f"the Lamplighter account {email} is deactivated; ask an admin")
    _, raw = identity.start_session(
        session=session, user=user, method="oidc", session_hours=session_hours
    )
    return user, raw


# -- routes -------------------------------------------------------------------------------------
def _require_enabled(settings: Settings) -> tuple[str, str]:
    if not settings.oidc_enabled or settings.oidc_issuer is None or settings.oidc_client_id is None:
        raise NotFound("single sign-on is not configured; sign in with email and password")
    return settings.oidc_issuer, settings.oidc_client_id


def _pkce_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


@router.get("/auth/oidc/login")
def login(
    settings: SettingsDep, next: Annotated[str | None, Query(max_length=MAX_NEXT_LENGTH)] = None
) -> Response:
    """Start single sign-on: remember the flow in a signed cookie and go to the IdP."""
    issuer, client_id = _require_enabled(settings)
    provider = discover(issuer)
    state, nonce, verifier = (
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(64),
    )
    url = httpx.URL(provider.authorization_endpoint).copy_merge_params(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri(settings),
            "scope": settings.oidc_scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": _pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    response = RedirectResponse(str(url), status_code=302, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        STATE_COOKIE,
        seal_state(
            settings,
            {"state": state, "nonce": nonce, "verifier": verifier, "next": safe_next(next)},
        ),
        max_age=STATE_TTL_S,
        path=STATE_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    return response


@router.get(CALLBACK_PATH)
def callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    error_description: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    """Finish single sign-on: check the state, validate the IdP's answer and sign the user in."""
    issuer, client_id = _require_enabled(settings)
    flow = open_state(settings, request.cookies.get(STATE_COOKIE))
    state_ok = (
        flow is not None
        and state is not None
        and hmac.compare_digest(state.encode(), str(flow["state"]).encode())
    )
    if error is not None:
        # The description is free text anyone can put in a link; show it only for our own flow.
        description = _printable(error_description, 200) if state_ok else ""
        named = _printable(error, 64) or "unknown_error"
        if description:
            named = f"{named}: {description}"
        raise Unauthorized(f"the identity provider did not sign you in ({named})")
    if flow is None:
        raise BadRequest(
            "the sign-in attempt expired or did not start in this browser; start again"
        )
    if not state_ok:
        raise BadRequest(
            "the sign-in answer does not belong to this browser's attempt (state mismatch); "
            "start again"
        )
    if not code:
        raise BadRequest("the identity provider sent no authorization code; start again")
    provider = discover(issuer)
    id_token = exchange_code(
        settings=settings, provider=provider, code=code, code_verifier=str(flow["verifier"])
    )
    claims = validate_id_token(
        provider=provider, client_id=client_id, id_token=id_token, nonce=str(flow["nonce"])
    )
    user, raw = sign_in(
        session=session,
        claims=claims,
        auto_create=settings.oidc_auto_create,
        session_hours=settings.session_hours,
    )
    session.commit()
    log.info("signed in with OIDC", extra={"user_id": user.id})
    response = RedirectResponse(
        safe_next(str(flow.get("next") or "/")),
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=settings.session_hours * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    response.delete_cookie(
        STATE_COOKIE,
        path=STATE_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )
    return response
