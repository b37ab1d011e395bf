"""Single sign-on through OIDC, against a fake identity provider behind httpx.MockTransport."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import SecretStr

from lamplighter.app import create_app
from lamplighter.core import identity, oidc
from lamplighter.core.db import Database
from lamplighter.core.models import User, WebSession
from lamplighter.core.settings import Settings
from tests.conftest import SYSTEM, make_user

ISSUER = "https://idp.example"
CLIENT_ID = "lamplighter"
CLIENT_SECRET = "s3cret"
CALLBACK = "http://127.0.0.1:8080/auth/oidc/callback"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeIdP:
    """Discovery, JWKS, an authorize step the test drives by hand, and a token endpoint.

    The token endpoint checks the grant the way a real provider does (known code, same
    redirect URI, PKCE verifier, client credentials) and answers with an ID token whose
    claims the test can override (``None`` drops a claim).
    """

    def __init__(self, key: RSAKey) -> None:
        self.keys = [key]
        self.sign_with = key
        self.email = "ada@example.com"
        self.claims: dict[str, Any] = {}
        self.auth_methods = ["client_secret_basic", "client_secret_post"]
        self.unreachable: set[str] = set()
        self.grants: dict[str, dict[str, str]] = {}
        self.token_requests: list[httpx.Request] = []
        self.answered: list[str] = []

    def authorize(self, location: str) -> dict[str, str]:
        """What the browser brings back after the user signs in at the IdP."""
        assert location.startswith(f"{ISSUER}/authorize?")
        params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        code = secrets.token_urlsafe(16)
        self.grants[code] = params
        return {"code": code, "state": params["state"]}

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/authorize",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/jwks",
                    "token_endpoint_auth_methods_supported": self.auth_methods,
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [k.as_dict(private=False) for k in self.keys]})
        if path == "/token":
            return self._token(request)
        return httpx.Response(404)

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        expected_basic = (
            "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        )
        by_basic = request.headers.get("authorization") == expected_basic
        by_post = form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
        if not (by_basic if "client_secret_basic" in self.auth_methods else by_post):
            return httpx.Response(401, json={"error": "invalid_client"})
        grant = self.grants.pop(form.get("code", ""), None)
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != grant["redirect_uri"]
            or _b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            != grant["code_challenge"]
        ):
            return httpx.Response(400, json={"error": "invalid_grant"})
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": "idp-user-1", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
            "nonce": grant["nonce"], "email": self.email, "email_verified": True, "name": "Ada Lovelace",
        }  # fmt: skip
        claims.update(self.claims)
        claims = {k: v for k, v in claims.items() if v is not None}
        kid = self.sign_with.kid
        id_token = jwt.encode({"alg": "RS256", "kid": kid}, claims, self.sign_with)
        self.answered.append(id_token)
        return httpx.Response(
            200,
            json={
                "access_token": "at-" + secrets.token_hex(8),
                "token_type": "Bearer",
                "id_token": id_token,
            },
        )


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig"})


@pytest.fixture(scope="module")
def other_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig"})


@pytest.fixture
def idp(monkeypatch: pytest.MonkeyPatch, idp_key: RSAKey) -> Iterator[FakeIdP]:
    fake = FakeIdP(idp_key)
    monkeypatch.setattr(oidc, "TRANSPORT", httpx.MockTransport(fake.handler))
    oidc.clear_caches()
    yield fake
    oidc.clear_caches()


@pytest.fixture
def sso_client(
    settings: Settings, db: Database, idp: FakeIdP
) -> Iterator[Callable[..., TestClient]]:
    """Build a client for an app with OIDC configured; keyword arguments override settings."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        sso = settings.model_copy(update={
            "oidc_issuer": ISSUER, "oidc_client_id": CLIENT_ID, "oidc_client_secret": SecretStr(CLIENT_SECRET),
            **overrides,
        })  # fmt: skip
        client = TestClient(
            create_app(sso, db=db),
            base_url="http://testserver",
            headers={"Accept": "application/problem+json"},
        )
        clients.append(client.__enter__())
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def start(client: TestClient, idp: FakeIdP, next: str | None = None) -> dict[str, str]:
    params = {"next": next} if next is not None else {}
    response = client.get("/auth/oidc/login", params=params, follow_redirects=False)
    assert response.status_code in {302, 303}, response.text
    return idp.authorize(response.headers["location"])


def finish(client: TestClient, answer: dict[str, str]) -> httpx.Response:
    response: httpx.Response = client.get(
        "/auth/oidc/callback", params=answer, follow_redirects=False
    )
    return response


def assert_not_signed_in(client: TestClient, response: httpx.Response, db: Database) -> None:
    assert "ll_session" not in response.cookies
    assert client.get("/api/v1/me").status_code == 401
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(WebSession)) == 0


# -- the happy path -----------------------------------------------------------------------------
def test_round_trip_signs_the_user_in_and_returns_to_next(sso_client, idp, db):
    make_user(db, email="ada@example.com")
    client = sso_client()

    login = client.get(
        "/auth/oidc/login", params={"next": "/services/checkout?tab=slo"}, follow_redirects=False
    )
    assert login.status_code in {302, 303}
    sent = {k: v[0] for k, v in parse_qs(urlsplit(login.headers["location"]).query).items()}
    assert sent["response_type"] == "code"
    assert sent["client_id"] == CLIENT_ID
    assert sent["redirect_uri"] == CALLBACK
    assert sent["scope"] == "openid email profile"
    assert sent["code_challenge_method"] == "S256"
    assert len(sent["state"]) >= 32 and len(sent["nonce"]) >= 32
    state_cookie = login.headers["set-cookie"].lower()
    assert (
        "ll_oidc=" in state_cookie and "httponly" in state_cookie and "samesite=lax" in state_cookie
    )
    assert "max-age=600" in state_cookie

    done = finish(client, idp.authorize(login.headers["location"]))

    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/services/checkout?tab=slo"
    set_cookies = [v.lower() for v in done.headers.get_list("set-cookie")]
    session_cookie = next(c for c in set_cookies if c.startswith("ll_session="))
    assert (
        "httponly" in session_cookie
        and "samesite=lax" in session_cookie
        and "max-age=43200" in session_cookie
    )
    assert any(c.startswith("ll_oidc=") and "max-age=0" in c for c in set_cookies), (
        "state cookie not cleared"
    )
    me = client.get("/api/v1/me")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "ada@example.com"
    # The provider saw client_secret_basic and a PKCE verifier matching the challenge.
    assert len(idp.token_requests) == 1 and idp.token_requests[0].headers[
        "authorization"
    ].startswith("Basic ")
    logins = client.get("/api/v1/audit", params={"action": "session.login"}).json()["items"]
    assert [entry["diff"] for entry in logins] and "oidc" in str(logins[0]["diff"])


def test_client_secret_post_when_the_provider_only_offers_it(sso_client, idp, db):
    make_user(db, email="ada@example.com")
    idp.auth_methods = ["client_secret_post"]
    client = sso_client()

    done = finish(client, start(client, idp))

    assert done.status_code == 303, done.text
    assert "authorization" not in idp.token_requests[0].headers
    assert client.get("/api/v1/me").json()["email"] == "ada@example.com"


def test_rotated_signing_key_is_fetched_again(sso_client, idp, db, other_key):
    make_user(db, email="ada@example.com")
    client = sso_client()
    assert finish(client, start(client, idp)).status_code == 303
    rotated = RSAKey.import_key(other_key.as_dict(private=True) | {"kid": "key-2"})
    idp.keys, idp.sign_with = [rotated], rotated

    second = sso_client()
    assert finish(second, start(second, idp)).status_code == 303
    assert second.get("/api/v1/me").json()["email"] == "ada@example.com"


@pytest.mark.parametrize(
    "unsafe",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"],
)
def test_next_pointing_off_site_lands_on_the_home_page(sso_client, idp, db, unsafe):
    make_user(db, email="ada@example.com")
    client = sso_client()

    done = finish(client, start(client, idp, next=unsafe))

    assert done.status_code == 303
    assert done.headers["location"] == "/"


def test_secrets_never_reach_the_logs(sso_client, idp, db, caplog):
    make_user(db, email="ada@example.com")
    client = sso_client()
    caplog.set_level(logging.DEBUG)

    answer = start(client, idp)
    assert finish(client, answer).status_code == 303

    # The test client is an httpx client too; its lines stand for the browser, not the server.
    server_side = [r for r in caplog.records if "http://testserver" not in r.getMessage()]
    assert any(r.name == "lamplighter.oidc" for r in server_side)
    logged = "\n".join(str(record.__dict__) for record in server_side)
    for secret in (CLIENT_SECRET, answer["code"], idp.answered[0], answer["state"]):
        assert secret not in logged


# -- refusals -----------------------------------------------------------------------------------
def test_not_configured_is_not_found(client):
    for path in ("/auth/oidc/login", "/auth/oidc/callback?code=x&state=y"):
        response = client.get(
            path, follow_redirects=False, headers={"Accept": "application/problem+json"}
        )
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        page = client.get(path, follow_redirects=False, headers={"Accept": "text/html"})
        assert page.status_code == 404 and "not configured" in page.text
        assert "not configured" in response.json()["detail"]


def test_tampered_state_cookie_is_refused(sso_client, idp, db):
    make_user(db, email="ada@example.com")
    client = sso_client()
    answer = start(client, idp)
    payload, signature = client.cookies["ll_oidc"].split(".")
    forged = _b64(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(
            b'"next":"/"', b'"next":"//evil.example"'
        )
    )
    assert forged != payload
    client.cookies.clear()

    response = client.get(
        "/auth/oidc/callback",
        params=answer,
        headers={"Cookie": f"ll_oidc={forged}.{signature}"},
        follow_redirects=False,
    )

    assert response.status_code == 400
    assert response.json()["type"] == "/problems/bad-request"
    assert idp.token_requests == [], "the code must not be redeemed"
    assert_not_signed_in(client, response, db)


def test_missing_state_cookie_is_refused(sso_client, idp, db):
    make_user(db, email="ada@example.com")
    answer = start(sso_client(), idp)
    other_browser = sso_client()

    response = finish(other_browser, answer)

    assert response.status_code == 400
    assert "start again" in response.json()["detail"]
    assert idp.token_requests == []
    assert_not_signed_in(other_browser, response, db)


def test_state_from_another_attempt_is_refused(sso_client, idp, db):
    make_user(db, email="ada@example.com")
    client = sso_client()
    answer = start(client, idp)

    response = finish(client, {**answer, "state": "someone-elses-state"})

    assert response.status_code == 400
    assert "state mismatch" in response.json()["detail"]
    assert_not_signed_in(client, response, db)


def test_expired_attempt_is_refused(sso_client, idp, db, monkeypatch):
    make_user(db, email="ada@example.com")
    client = sso_client()
    answer = start(client, idp)
    monkeypatch.setattr(oidc, "STATE_TTL_S", -1)
    stale = oidc.open_state(client.app.state.settings, client.cookies["ll_oidc"])
    assert stale is not None
    expired = oidc.seal_state(
        client.app.state.settings, {k: v for k, v in stale.items() if k != "exp"}
    )
    client.cookies.clear()

    response = client.get(
        "/auth/oidc/callback",
        params=answer,
        headers={"Cookie": f"ll_oidc={expired}"},
        follow_redirects=False,
    )

    assert response.status_code == 400
    assert "expired" in response.json()["detail"]
    assert_not_signed_in(client, response, db)


def test_error_from_the_provider_is_named(sso_client, idp, db):
    client = sso_client()
    answer = start(client, idp)

    response = finish(
        client,
        {"state": answer["state"], "error": "access_denied", "error_description": "User cancelled"},
    )

    assert response.status_code == 401
    assert "access_denied" in response.json()["detail"]
    assert "User cancelled" in response.json()["detail"]
    assert_not_signed_in(client, response, db)


@pytest.mark.parametrize(
    ("case", "claims", "reason"),
    [
        ("wrong nonce", {"nonce": "replayed-nonce"}, "nonce"),
        ("wrong audience", {"aud": "another-app"}, "aud"),
        ("wrong issuer", {"iss": "https://evil.example"}, "iss"),
        ("expired", {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "expired"),
        ("no expiry", {"exp": None}, "exp"),
        ("authorized for another party", {"aud": [CLIENT_ID, "other"], "azp": "other"}, "azp"),
    ],
)
def test_invalid_id_token_is_refused(sso_client, idp, db, case, claims, reason):
    make_user(db, email="ada@example.com")
    idp.claims = claims
    client = sso_client()

    response = finish(client, start(client, idp))

    assert response.status_code == 401, case
    assert reason in response.json()["detail"]
    assert_not_signed_in(client, response, db)


def test_id_token_signed_by_another_key_is_refused(sso_client, idp, db, other_key):
    make_user(db, email="ada@example.com")
    idp.sign_with = other_key  # same kid, different key: a forgery
    client = sso_client()

    response = finish(client, start(client, idp))

    assert response.status_code == 401
    assert "signature" in response.json()["detail"]
    assert_not_signed_in(client, response, db)


def test_code_redeemed_twice_is_refused(sso_client, idp, db):
    make_user(db, email="ada@example.com")
    client = sso_client()
    answer = start(client, idp)
    cookie = client.cookies["ll_oidc"]
    assert finish(client, answer).status_code == 303
    client.cookies.clear()

    replay = client.get(
        "/auth/oidc/callback",
        params=answer,
        headers={"Cookie": f"ll_oidc={cookie}"},
        follow_redirects=False,
    )

    assert replay.status_code == 401
    assert "invalid_grant" in replay.json()["detail"]


# -- which account ------------------------------------------------------------------------------
def test_unknown_email_without_auto_create_is_forbidden(sso_client, idp, db):
    idp.email = "newcomer@example.com"
    client = sso_client()

    response = finish(client, start(client, idp))

    assert response.status_code == 403
    assert (
        response.json()["detail"] == "no Lamplighter account for newcomer@example.com; ask an admin"
    )
    assert_not_signed_in(client, response, db)
    with db.sessionmaker() as session:
        assert identity.get_user_by_email(session=session, email="newcomer@example.com") is None


def test_unknown_email_with_auto_create_makes_a_member(sso_client, idp, db):
    idp.email = "Newcomer@Example.com"
    client = sso_client(oidc_auto_create=True)

    response = finish(client, start(client, idp))

    assert response.status_code == 303, response.text
    me = client.get("/api/v1/me").json()
    assert (me["email"], me["display_name"], me["role"]) == (
        "newcomer@example.com",
        "Ada Lovelace",
        "member",
    )
    created = client.get("/api/v1/audit", params={"action": "user.create"}).json()["items"]
    assert [(e["object_id"], e["actor_label"]) for e in created] == [(str(me["id"]), "oidc")]


def test_auto_created_user_without_name_is_named_by_email(sso_client, idp, db):
    idp.email, idp.claims = "quiet@example.com", {"name": None}
    client = sso_client(oidc_auto_create=True)

    assert finish(client, start(client, idp)).status_code == 303
    assert client.get("/api/v1/me").json()["display_name"] == "quiet@example.com"


def test_deactivated_user_is_forbidden(sso_client, idp, db):
    user = make_user(db, email="ada@example.com")
    with db.transaction() as session:
        identity.update_user(session=session, actor=SYSTEM, user_id=user.id, is_active=False)
    client = sso_client(oidc_auto_create=True)

    response = finish(client, start(client, idp))

    assert response.status_code == 403
    assert "deactivated" in response.json()["detail"]
    assert_not_signed_in(client, response, db)


@pytest.mark.parametrize("claims", [{"email_verified": False}, {"email": None}])
def test_unverified_or_missing_email_is_forbidden(sso_client, idp, db, claims):
    idp.claims = claims
    client = sso_client(oidc_auto_create=True)

    response = finish(client, start(client, idp))

    assert response.status_code == 403
    assert_not_signed_in(client, response, db)
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


# -- the provider is down -----------------------------------------------------------------------
def test_unreachable_provider_at_login_is_bad_gateway(sso_client, idp):
    idp.unreachable = {"/.well-known/openid-configuration"}
    client = sso_client()

    response = client.get("/auth/oidc/login", follow_redirects=False)

    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "/problems/identity-provider-unavailable"
    assert "try again later" in body["detail"]
    assert "ll_oidc" not in response.cookies


def test_unreachable_token_endpoint_is_bad_gateway(sso_client, idp, db):
    make_user(db, email="ada@example.com")
    client = sso_client()
    answer = start(client, idp)
    idp.unreachable = {"/token"}

    response = finish(client, answer)

    assert response.status_code == 502
    assert response.json()["status"] == 502
    assert_not_signed_in(client, response, db)


# -- pure helpers -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (None, "/"),
        ("/", "/"),
        ("/incidents/42?tab=timeline#x", "/incidents/42?tab=timeline#x"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("relative/path", "/"),
        ("/line\r\nbreak", "/"),
    ],
)
def test_safe_next_keeps_only_local_paths(given, kept):
    assert oidc.safe_next(given) == kept


def test_state_cookie_rejects_a_different_secret_key(settings):
    sealed = oidc.seal_state(settings, {"state": "s"})
    assert oidc.open_state(settings, sealed) == {
        "state": "s",
        "exp": pytest.approx(time.time() + 600, abs=5),
    }
    other = settings.model_copy(
        update={"secret_key": SecretStr("another-secret-key-0123456789abcdef")}
    )
    assert oidc.open_state(other, sealed) is None
    assert oidc.open_state(settings, sealed + "x") is None
    assert oidc.open_state(settings, "garbage") is None
