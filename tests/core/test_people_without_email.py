"""People imported without an e-mail address get one by hand (an admin, API or CLI) or from
single sign-on by the name they sign in with; until then they cannot sign in."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from lamplighter.cli import app as cli_app
from lamplighter.core import identity, oidc
from lamplighter.core.errors import Forbidden
from lamplighter.core.models import AuditEntry, User
from lamplighter.core.settings import get_settings
from tests.conftest import TEST_SECRET, auth, make_token, make_user


def imported(db: Any, name: str, namespace: str = "default") -> int:
    """A person as an import leaves someone without an address."""
    with db.transaction() as session:
        user = User(
            email=identity.no_email_address(namespace, name),
            display_name=name.title(),
            catalog_namespace=namespace,
            catalog_name=name,
        )
        session.add(user)
        session.flush()
        return user.id


def test_an_admin_sets_the_address_and_nobody_else_may(client: Any, db: Any) -> None:
    kim = imported(db, "kim")
    admin = make_token(db, make_user(db, role="admin"))
    member = make_token(db, make_user(db))
    body = {"email": "Kim@Example.com"}
    refused = client.patch(f"/api/v1/users/{kim}", json=body, headers=auth(member))
    assert refused.status_code == 403
    taken = make_user(db, email="taken@example.com")
    conflict = client.patch(
        f"/api/v1/users/{kim}", json={"email": taken.email}, headers=auth(admin)
    )
    assert conflict.status_code == 409
    stand_in = client.patch(
        f"/api/v1/users/{kim}",
        json={"email": identity.no_email_address("default", "other")},
        headers=auth(admin),
    )
    assert stand_in.status_code == 422 and stand_in.json()["errors"][0]["field"] == "body.email"
    done = client.patch(f"/api/v1/users/{kim}", json=body, headers=auth(admin))
    assert done.status_code == 200 and done.json()["email"] == "kim@example.com"
    with db.sessionmaker() as session:
        entry = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "user.update")
        ).one()
        assert entry.diff["after"]["email"] == "kim@example.com"
        assert entry.diff["before"]["email"].endswith(".no-email.invalid")


def test_single_sign_on_gives_the_address_to_the_one_person_with_that_name(db: Any) -> None:
    kim = imported(db, "kim")
    imported(db, "sam", "default")
    imported(db, "sam", "development")  # two people called sam: no guessing
    claims = {"email": "kim@example.com", "email_verified": True, "preferred_username": "Kim"}
    with db.transaction() as session:
        user, _ = oidc.sign_in(session=session, claims=claims, auto_create=False, session_hours=1)
    assert user.id == kim and user.email == "kim@example.com"
    with db.transaction() as session, pytest.raises(Forbidden):
        oidc.sign_in(
            session=session,
            claims={"email": "sam@example.com", "preferred_username": "sam"},
            auto_create=False,
            session_hours=1,
        )
    with db.sessionmaker() as session:
        sams = session.scalars(sa.select(User).where(User.catalog_name == "sam")).all()
        assert all(not identity.has_email(u.email) for u in sams)


def test_the_cli_sets_an_address(
    db: Any, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    kim = imported(db, "kim")
    monkeypatch.setenv("LAMPLIGHTER_DATABASE_URL", database_url)
    monkeypatch.setenv("LAMPLIGHTER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LAMPLIGHTER_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli_app, ["user", "set-email", str(kim), "kim@example.com", "-o", "json"]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["email"] == "kim@example.com"
