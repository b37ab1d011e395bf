"""Accounts: sign-in timing that does not tell which addresses exist, password changes that need
the current password and end the other sessions, and an admin who always remains."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from lamplighter.core import crypto, identity
from lamplighter.core.errors import Unauthorized
from lamplighter.core.models import AuditEntry, WebSession
from tests.conftest import SYSTEM, auth, make_token, make_user
from tests.helpers import PASSWORD, csrf_in, login, person, sign_in

NEW_PASSWORD = "a new and longer passphrase"


# -- sign-in timing ----------------------------------------------------------------------------
def _sign_in_time(db, email: str) -> float:
    timings = []
    for _ in range(3):
        identity.LOGIN_THROTTLE = identity.LoginThrottle()
        started = time.perf_counter()
        with db.sessionmaker() as session, pytest.raises(Unauthorized):
            identity.login_password(
                session=session, email=email, password="not the password", session_hours=1
            )
        timings.append(time.perf_counter() - started)
    return min(timings)  # the least disturbed by other work on the machine


def test_signing_in_takes_as_long_for_unknown_deactivated_and_real_accounts(db) -> None:
    crypto.use_hasher(crypto.PRODUCTION_HASHER)  # the cost that makes the difference
    try:
        real = make_user(db, password=PASSWORD)
        gone = make_user(db, password=PASSWORD)
        sso_only = make_user(db)
        with db.transaction() as session:
            identity.update_user(session=session, actor=SYSTEM, user_id=gone.id, is_active=False)
        for email in ("nobody@example.com", gone.email, sso_only.email):
            # Timings on a shared machine: measured again, beside a fresh hash and a real
            # sign-in, when other work disturbed one round (the heavier tests run meanwhile).
            for attempt in range(4):
                one_hash = min(_hash_time() for _ in range(3))
                real_s = _sign_in_time(db, real.email)
                elapsed = _sign_in_time(db, email)
                if elapsed >= 0.7 * one_hash and elapsed >= 0.4 * real_s:
                    break
            assert elapsed >= 0.7 * one_hash, (email, elapsed, one_hash, attempt)
            assert elapsed >= 0.4 * real_s, (email, elapsed, real_s, attempt)
    finally:
        crypto.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def _hash_time() -> float:
    started = time.perf_counter()
    crypto.PRODUCTION_HASHER.hash("x" * 12)
    return time.perf_counter() - started


# -- changing a password -------------------------------------------------------------------------
def _open_sessions(db, user_id: int) -> int:
    with db.sessionmaker() as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(WebSession)
                .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
            )
            or 0
        )


def test_changing_ones_own_password_needs_the_current_one(client, db) -> None:
    user = person(db)
    token = make_token(db, user)

    for body, field in (
        ({"password": NEW_PASSWORD}, "body.current_password"),
        (
            {"password": NEW_PASSWORD, "current_password": "wrong password!"},
            "body.current_password",
        ),
    ):
        refused = client.patch("/api/v1/me", json=body, headers=auth(token))
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == field
    assert login(client, user.email, NEW_PASSWORD).status_code != 303

    changed = client.patch(
        f"/api/v1/users/{user.id}",
        json={"password": NEW_PASSWORD, "current_password": PASSWORD},
        headers=auth(token),
    )
    assert changed.status_code == 200, changed.text
    assert login(client, user.email, NEW_PASSWORD).status_code == 303


def test_a_new_password_ends_the_users_other_sessions_but_not_this_one(client, db) -> None:
    user = person(db)
    with db.transaction() as session:  # signed in on two other devices
        identity.start_session(session=session, user=user, method="password", session_hours=8)
        _, other_raw = identity.start_session(
            session=session, user=user, method="password", session_hours=8
        )
    token = make_token(db, user)
    csrf = sign_in(client, user)
    assert _open_sessions(db, user.id) == 3

    page = client.get("/profile")
    assert 'action="/profile/password"' in page.text
    response = client.post(
        "/profile/password",
        data={
            "csrf_token": csrf_in(page.text),
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
        },
        follow_redirects=False,
    )

    assert response.status_code == 303, response.text
    assert _open_sessions(db, user.id) == 1  # this browser's
    assert client.get("/profile").status_code == 200
    with db.sessionmaker() as session, pytest.raises(Unauthorized):
        identity.authenticate_session(session=session, raw=other_raw)
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 200  # tokens stay
    assert csrf


def test_the_password_form_names_a_wrong_current_password(client, db) -> None:
    user = person(db)
    sign_in(client, user)
    page = client.get("/profile")
    response = client.post(
        "/profile/password",
        data={
            "csrf_token": csrf_in(page.text),
            "current_password": "not my password",
            "new_password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 422
    assert "is not your current password" in response.text
    client.cookies.clear()
    assert login(client, user.email, PASSWORD).status_code == 303


def test_an_admin_resets_another_users_password_without_it_and_ends_their_sessions(
    client, db
) -> None:
    admin = make_user(db, role="admin")
    user = person(db)
    with db.transaction() as session:
        _, raw = identity.start_session(
            session=session, user=user, method="password", session_hours=8
        )

    reset = client.patch(
        f"/api/v1/users/{user.id}",
        json={"password": NEW_PASSWORD},
        headers=auth(make_token(db, admin)),
    )

    assert reset.status_code == 200, reset.text
    assert _open_sessions(db, user.id) == 0
    with db.sessionmaker() as session, pytest.raises(Unauthorized):
        identity.authenticate_session(session=session, raw=raw)
    assert login(client, user.email, NEW_PASSWORD).status_code == 303
    with db.sessionmaker() as session:
        entry = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "user.update")
        ).all()[-1]
    assert "sessions_ended" in str(entry.diff) and NEW_PASSWORD not in str(entry.diff)


# -- the last admin ------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [{"role": "sre"}, {"is_active": False}])
def test_the_last_active_admin_cannot_be_demoted_or_deactivated(client, db, change) -> None:
    admin = make_user(db, role="admin")
    headers = auth(make_token(db, admin))

    refused = client.patch(f"/api/v1/users/{admin.id}", json=change, headers=headers)

    assert refused.status_code == 409, refused.text
    assert "last active admin" in refused.json()["detail"]
    second = make_user(db, role="admin")
    allowed = client.patch(f"/api/v1/users/{second.id}", json=change, headers=headers)
    assert allowed.status_code == 200, allowed.text
    again = client.patch(f"/api/v1/users/{admin.id}", json=change, headers=headers)
    assert again.status_code == 409, again.text
