"""``postgres.database``: a database and its owner role, with a generated password, on the
PostgreSQL server configured by ``LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL``.

The admin role needs ``CREATEDB`` and ``CREATEROLE``. Identifiers are always quoted by
``psycopg.sql.Identifier``; the password reaches the server only as a SCRAM verifier computed
client-side, so it never appears in the server's statement log either. The connection string is
stored through ``ctx.secret("connection_string", …)``; the output carries only its reference.

Ownership mark: both objects get ``COMMENT … IS 'lamplighter <ctx.key> secret=<reference>'``. A
second attempt of the step finds the marks and returns the same output without a new secret;
compensate drops only objects carrying the mark. A database or role that exists without it is
someone else's: the run refuses it before creating anything.

Example step::

    - id: db
      action: postgres.database
      input:
        database: "${{ parameters.name | replace('-', '_') }}"
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, field_validator, model_validator

from lamplighter.core.settings import Settings
from lamplighter.selfservice.actions.base import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    Ownership,
    StepContext,
    Unavailable,
    register,
)
from lamplighter.selfservice.models import Approval

IDENTIFIER_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
SECRET_NAME = "connection_string"  # noqa: S105 - the secret's name, not a secret
_MARK = re.compile(r"^lamplighter (?P<key>\S+)(?: secret=(?P<secret>\S+))?$")


class PostgresDatabaseInput(ActionInput):
    database: str = Field(pattern=IDENTIFIER_PATTERN, description="Name of the new database.")
    owner_role: str | None = Field(
        default=None,
        pattern=IDENTIFIER_PATTERN,
        description="Role owning it; default <database>_owner.",
    )

    @field_validator("owner_role")
    @classmethod
    def _not_reserved(cls, role: str | None) -> str | None:
        if role is not None and role.startswith("pg_"):
            raise ValueError("role names starting with pg_ are reserved by PostgreSQL")
        return role

    @model_validator(mode="after")
    def _role_fits(self) -> PostgresDatabaseInput:
        if self.owner_role is None and len(self.role) > 63:
            raise ValueError(
                "owner_role: <database>_owner would exceed 63 characters; name the role"
            )
        return self

    @property
    def role(self) -> str:
        return self.owner_role or f"{self.database}_owner"


class PostgresDatabaseOutput(ActionOutput):
    host: str
    port: int
    database: str
    role: str
    connection_secret: str = Field(description="Reference to the stored connection string.")


@dataclass(frozen=True)
class _Mark:
    key: str
    secret: str | None


def _parse_mark(comment: str | None) -> _Mark | None:
    match = _MARK.match(comment or "")
    return _Mark(match["key"], match["secret"]) if match else None


def _admin_url(ctx: StepContext) -> str:
    url = ctx.settings.selfservice_postgres_admin_url
    if url is None or not url.get_secret_value():
        raise ActionError(
            "no PostgreSQL server is configured: set LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL"
        )
    # Accept the SQLAlchemy spelling too; libpq knows only postgresql:// and postgres://.
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url.get_secret_value())


def _connect(ctx: StepContext) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(_admin_url(ctx), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        # libpq's message names host and port but never the password.
        raise ActionError(f"cannot reach the PostgreSQL server: {exc}", retryable=True) from exc


def _server_address(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    params = conninfo_to_dict(conn.info.dsn)
    host = str(params.get("host") or conn.info.host or "localhost")
    if host.startswith("/"):  # a Unix socket: clients elsewhere use the host name
        host = "localhost"
    return host, int(params.get("port") or conn.info.port or 5432)


def _database_mark(conn: psycopg.Connection[Any], name: str) -> tuple[bool, _Mark | None]:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (name,),
    ).fetchone()
    return (row is not None, _parse_mark(row[0]) if row else None)


def _role_mark(conn: psycopg.Connection[Any], name: str) -> tuple[bool, _Mark | None]:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (name,)
    ).fetchone()
    return (row is not None, _parse_mark(row[0]) if row else None)


def _ours(found: tuple[bool, _Mark | None], key: str) -> bool:
    exists, mark = found
    return exists and mark is not None and mark.key == key


def _verifier(conn: psycopg.Connection[Any], role: str, password: str) -> str:
    """A SCRAM verifier for ``password``, computed by libpq, so the server never sees it."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def _set_comment(conn: psycopg.Connection[Any], kind: str, name: str, comment: str) -> None:
    conn.execute(
        sql.SQL("COMMENT ON {} {} IS {}").format(
            sql.SQL(kind), sql.Identifier(name), sql.Literal(comment)
        )
    )


def _drop_database(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )
    force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))


@register
class PostgresDatabase(Action):
    """Create a PostgreSQL database owned by a new login role.

    Input ``{"database": "payments"}`` creates role ``payments_owner`` with a random password and
    database ``payments`` owned by it, and outputs ``{"host": …, "port": 5432, "database":
    "payments", "role": "payments_owner", "connection_secret": "<reference>"}``; the requester
    reads ``postgresql://payments_owner:…@host:5432/payments`` once from the secret.
    """

    name = "postgres.database"
    title = "Create a PostgreSQL database"
    description = "Create a database and an owner role with a generated password."
    Input = PostgresDatabaseInput
    Output = PostgresDatabaseOutput
    ownership = Ownership(
        creates="a database and its owner role on the platform's server; a database or role "
        "that exists without this step's mark is refused, never adopted or changed",
    )
    # The platform's shared server: every template using it is reviewed, and every run waits
    # for the owning team's lead at least (as the shipped postgres-database golden path does).
    risk = "high"
    min_approval = Approval.TEAM_LEAD

    @classmethod
    def preflight(cls, settings: Settings, data: Mapping[str, Any] | None) -> Unavailable | None:
        url = settings.selfservice_postgres_admin_url
        if url is None or not url.get_secret_value():
            return Unavailable(
                "no PostgreSQL server is configured", "LAMPLIGHTER_SELFSERVICE_POSTGRES_ADMIN_URL"
            )
        return None

    def reachable(self, ctx: StepContext, data: Any) -> None:
        with _connect(ctx):
            pass

    def run(self, ctx: StepContext, data: PostgresDatabaseInput) -> PostgresDatabaseOutput:
        database, role = data.database, data.role
        with _connect(ctx) as conn:
            host, port = _server_address(conn)
            db_found, role_found = _database_mark(conn, database), _role_mark(conn, role)
            if db_found[0] and not _ours(db_found, ctx.key):
                raise ActionError(f"database {database!r} already exists", field="database")
            if role_found[0] and not _ours(role_found, ctx.key):
                raise ActionError(f"role {role!r} already exists", field="owner_role")
            earlier = role_found[1]
            if db_found[0] and earlier is not None and earlier.secret:
                ctx.log(f"database {database} and role {role} exist from an earlier attempt")
                return PostgresDatabaseOutput(
                    host=host, port=port, database=database, role=role,
                    connection_secret=earlier.secret,
                )  # fmt: skip

            password = secrets.token_urlsafe(32)
            reference = ctx.secret(
                SECRET_NAME,
                f"postgresql://{quote(role)}:{quote(password, safe='')}@{host}:{port}/{quote(database)}",
            )
            mark = f"lamplighter {ctx.key} secret={reference}"
            verifier = _verifier(conn, role, password)
            created_role = False
            try:
                if role_found[0]:  # an earlier attempt stopped half-way: its password is lost
                    conn.execute(
                        sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                            sql.Identifier(role), sql.Literal(verifier)
                        )
                    )
                else:
                    conn.execute(
                        sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
                            sql.Identifier(role), sql.Literal(verifier)
                        )
                    )
                    created_role = True
                # The admin acts as the owner to create, and later drop, the database.
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
                _set_comment(conn, "ROLE", role, mark)
                if not db_found[0]:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(database), sql.Identifier(role)
                        )
                    )
                else:  # made by an earlier attempt whose role is gone
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                            sql.Identifier(database), sql.Identifier(role)
                        )
                    )
                _set_comment(conn, "DATABASE", database, mark)
                # Only the owner (and superusers) may connect; PUBLIC gets CONNECT by default.
                conn.execute(
                    sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                        sql.Identifier(database)
                    )
                )
            except psycopg.errors.DuplicateObject as exc:  # lost a race for the role name
                raise ActionError(f"role {role!r} already exists", field="owner_role") from exc
            except psycopg.errors.DuplicateDatabase as exc:  # lost a race for the database
                if created_role:
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
                raise ActionError(
                    f"database {database!r} already exists", field="database"
                ) from exc
            except psycopg.OperationalError as exc:
                raise ActionError(f"PostgreSQL failed: {exc}", retryable=True) from exc
            except psycopg.Error as exc:  # e.g. the admin role lacks CREATEDB
                raise ActionError(f"PostgreSQL refused: {exc}") from exc
        ctx.log(f"created database {database} owned by role {role} on {host}:{port}")
        return PostgresDatabaseOutput(
            host=host, port=port, database=database, role=role, connection_secret=reference
        )

    def compensate(
        self,
        ctx: StepContext,
        data: PostgresDatabaseInput,
        output: PostgresDatabaseOutput | None,
    ) -> None:
        url = ctx.settings.selfservice_postgres_admin_url
        if output is None and (url is None or not url.get_secret_value()):
            # No server is configured, so the run step could not have created anything.
            ctx.log("no PostgreSQL server is configured: nothing to undo")
            return
        with _connect(ctx) as conn:
            if _ours(_database_mark(conn, data.database), ctx.key):
                _drop_database(conn, data.database)
                ctx.log(f"dropped database {data.database}")
            if _ours(_role_mark(conn, data.role), ctx.key):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(data.role)))
                ctx.log(f"dropped role {data.role}")
