"""postgres.database against the real PostgreSQL server named by LAMPLIGHTER_TEST_PG_ADMIN_URL
(an admin role with CREATEDB and CREATEROLE). Skipped without it, failed under REQUIRE_ALL."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import ValidationError

from lamplighter.core.crypto import SecretBox
from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions.base import ACTIONS, ActionError, StepContext
from lamplighter.selfservice.actions.postgres import (
    PostgresDatabase,
    PostgresDatabaseInput,
    PostgresDatabaseOutput,
)
from tests.conftest import SYSTEM, TEST_SECRET, require

ADMIN_URL = os.environ.get("LAMPLIGHTER_TEST_PG_ADMIN_URL")
BOX = SecretBox(TEST_SECRET.encode())


class Vault:
    """Stands in for the run engine's secret store: keeps ciphertext, hands out references."""

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}

    def sink(self, name: str, value: str) -> str:
        reference = f"secret:{len(self.stored) + 1}:{name}"
        self.stored[reference] = BOX.encrypt(value)
        return reference

    def read(self, reference: str) -> str:
        return BOX.decrypt(self.stored[reference])


@pytest.fixture
def admin_url() -> str:
    require(bool(ADMIN_URL), "a PostgreSQL admin role (LAMPLIGHTER_TEST_PG_ADMIN_URL)")
    assert ADMIN_URL
    return ADMIN_URL


@pytest.fixture
def settings(admin_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        secret_key=TEST_SECRET,
        selfservice_postgres_admin_url=admin_url,
    )


@pytest.fixture
def name(admin_url: str) -> Iterator[str]:
    """A fresh database name; whatever a test leaves under it (and its role) is dropped."""
    database = f"ll_test_{uuid.uuid4().hex[:10]}"
    yield database
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        for role in (f"{database}_owner", f"{database}_other"):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def make_ctx(settings: Settings, vault: Vault, *, run_id: int = 1) -> StepContext:
    return StepContext(
        session=None,  # type: ignore[arg-type]  # this action writes no rows
        settings=settings,
        box=BOX,
        actor=SYSTEM,
        run_id=run_id,
        step_id="db",
        requesting_team_id=None,
        secret_sink=vault.sink,
    )


def exists(admin_url: str, catalog: str, column: str, value: str) -> bool:
    query = sql.SQL("SELECT 1 FROM {} WHERE {} = %s").format(
        sql.Identifier(catalog), sql.Identifier(column)
    )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute(query, (value,)).fetchone() is not None


def database_exists(admin_url: str, name: str) -> bool:
    return exists(admin_url, "pg_database", "datname", name)


def role_exists(admin_url: str, name: str) -> bool:
    return exists(admin_url, "pg_roles", "rolname", name)


def create(settings: Settings, vault: Vault, database: str, **extra: Any) -> PostgresDatabaseOutput:
    return PostgresDatabase().run(
        make_ctx(settings, vault), PostgresDatabaseInput(database=database, **extra)
    )


def test_registered() -> None:
    assert ACTIONS["postgres.database"] is PostgresDatabase


def test_owner_connects_with_the_stored_secret_and_creates_a_table(
    settings: Settings, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault = Vault()
    ctx = make_ctx(settings, vault)

    output = PostgresDatabase().run(ctx, PostgresDatabaseInput(database=name))

    assert output.database == name and output.role == f"{name}_owner"
    assert output.host == "127.0.0.1" and output.port == 5432
    assert list(vault.stored) == [output.connection_secret]
    connection_string = vault.read(output.connection_secret)
    with psycopg.connect(connection_string, autocommit=True) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            f"{name}_owner",
            name,
        )
        conn.execute("CREATE TABLE payments (id bigint PRIMARY KEY, amount_cents bigint)")
        conn.execute("INSERT INTO payments VALUES (1, 250)")
        assert conn.execute("SELECT amount_cents FROM payments").fetchone() == (250,)

    password = psycopg.conninfo.conninfo_to_dict(connection_string)["password"]
    assert password and len(str(password)) >= 32
    for text in (output.model_dump_json(), "\n".join(ctx.logs), caplog.text):
        assert str(password) not in text
    assert ctx.logs  # it did say what it made


def test_other_roles_cannot_connect(settings: Settings, name: str, admin_url: str) -> None:
    vault = Vault()
    create(settings, vault, name)
    outsider = f"{name}_other"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'x-outsider-pw'").format(
                sql.Identifier(outsider)
            )
        )
    params = psycopg.conninfo.conninfo_to_dict(admin_url)
    params.update(user=outsider, password="x-outsider-pw", dbname=name)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(**params)  # type: ignore[arg-type]


def test_second_attempt_returns_the_same_output_without_a_new_secret(
    settings: Settings, name: str
) -> None:
    vault = Vault()
    first = create(settings, vault, name)
    second = create(settings, vault, name)

    assert second == first
    assert len(vault.stored) == 1
    with psycopg.connect(vault.read(first.connection_secret)) as conn:  # the password still works
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_taken_database_name_is_refused_and_nothing_is_created(
    settings: Settings, name: str, admin_url: str
) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    vault = Vault()
    ctx = make_ctx(settings, vault)

    with pytest.raises(ActionError) as caught:
        PostgresDatabase().run(ctx, PostgresDatabaseInput(database=name))
    assert caught.value.field == "database" and "already exists" in str(caught.value)
    assert not role_exists(admin_url, f"{name}_owner")
    assert vault.stored == {}

    PostgresDatabase().compensate(ctx, PostgresDatabaseInput(database=name), None)
    assert database_exists(admin_url, name)  # not ours: never dropped


def test_taken_role_is_refused_and_nothing_is_created(
    settings: Settings, name: str, admin_url: str
) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"{name}_owner")))
    vault = Vault()
    ctx = make_ctx(settings, vault)

    with pytest.raises(ActionError) as caught:
        PostgresDatabase().run(ctx, PostgresDatabaseInput(database=name))
    assert caught.value.field == "owner_role"
    assert not database_exists(admin_url, name)

    PostgresDatabase().compensate(ctx, PostgresDatabaseInput(database=name), None)
    assert role_exists(admin_url, f"{name}_owner")


def test_another_runs_database_is_refused(settings: Settings, name: str, admin_url: str) -> None:
    vault = Vault()
    first = create(settings, vault, name)
    other = make_ctx(settings, vault, run_id=2)

    with pytest.raises(ActionError) as caught:
        PostgresDatabase().run(other, PostgresDatabaseInput(database=name))
    assert caught.value.field == "database"
    PostgresDatabase().compensate(other, PostgresDatabaseInput(database=name), None)
    with psycopg.connect(vault.read(first.connection_secret)) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (name,)


def test_compensate_drops_database_and_role_even_while_connected(
    settings: Settings, name: str, admin_url: str
) -> None:
    vault = Vault()
    ctx = make_ctx(settings, vault)
    data = PostgresDatabaseInput(database=name, owner_role=f"{name}_other")
    output = PostgresDatabase().run(ctx, data)
    assert output.role == f"{name}_other"
    lingering = psycopg.connect(vault.read(output.connection_secret), autocommit=True)

    try:
        PostgresDatabase().compensate(ctx, data, output)
    finally:
        lingering.close()

    assert not database_exists(admin_url, name)
    assert not role_exists(admin_url, f"{name}_other")
    PostgresDatabase().compensate(ctx, data, output)  # nothing left: still fine


def test_unreachable_server_is_retryable(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        selfservice_postgres_admin_url="postgresql://admin:hunter2-pw@127.0.0.1:1/postgres",
    )
    with pytest.raises(ActionError) as caught:
        PostgresDatabase().run(make_ctx(settings, Vault()), PostgresDatabaseInput(database="x"))
    assert caught.value.retryable
    assert "hunter2-pw" not in str(caught.value)


def test_unconfigured_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ActionError) as caught:
        PostgresDatabase().run(
            make_ctx(Settings(data_dir=tmp_path), Vault()), PostgresDatabaseInput(database="x")
        )
    assert "LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL" in str(caught.value)
    # Undoing that failed step succeeds: with no server nothing can have been created, and the
    # run must not report "could not undo, clean up by hand".
    ctx = make_ctx(Settings(data_dir=tmp_path), Vault())
    PostgresDatabase().compensate(ctx, PostgresDatabaseInput(database="x"), None)
    assert any("nothing to undo" in line for line in ctx.logs)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"database": "Payments"}, "database"),
        ({"database": "pay-ments"}, "database"),
        ({"database": "x; DROP DATABASE postgres"}, "database"),
        ({"database": "a" * 64}, "database"),
        ({"database": "ok", "owner_role": 'bad"role'}, "owner_role"),
        ({"database": "ok", "owner_role": "pg_monitor"}, "owner_role"),
    ],
)
def test_names_must_be_plain_identifiers(values: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresDatabaseInput(**values)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_default_role_name_must_fit() -> None:
    with pytest.raises(ValidationError, match="owner_role"):
        PostgresDatabaseInput(database="a" * 60)
    assert PostgresDatabaseInput(database="a" * 60, owner_role="short").role == "short"
