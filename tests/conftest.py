"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from LAMPLIGHTER_TEST_DATABASE_URL. Without it those tests skip, unless
LAMPLIGHTER_TEST_REQUIRE_ALL=1 (as in CI), where a missing server fails the run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

import lamplighter.models_registry  # noqa: F401
from lamplighter import cli, domains
from lamplighter.app import create_app
from lamplighter.core import clock, crypto, events, identity, migrate
from lamplighter.core.context import Actor
from lamplighter.core.db import Base, Database
from lamplighter.core.models import Team, User
from lamplighter.core.settings import Settings, get_settings
from lamplighter.tickets import service as ticket_service
from tests import helpers

PG_URL = os.environ.get("LAMPLIGHTER_TEST_DATABASE_URL")
# Under pytest-xdist (make test runs two workers) each worker gets a database of its own, named
# after the configured one: a session fixture drops the schema of the one it uses.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
# The width of the terminal the suite runs in (xdist workers get COLUMNS=80) is not the CLI
# tests' business: those that need a width set COLUMNS themselves.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
REQUIRE_ALL = os.environ.get("LAMPLIGHTER_TEST_REQUIRE_ALL") == "1"
SYSTEM = Actor.system("test")
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
_counter = itertools.count(1)

# Every domain registered (event types, handlers, subscriptions), and every event emitted in a
# test checked against its declared payload model: a mismatch fails the test that emitted it.
domains.load()
events.STRICT = True


class _AnyPayload(events.EventPayload):
    model_config = pydantic.ConfigDict(extra="allow")


for _name in ("test.effect", "test.ordered", "test.feed"):  # what the job and webhook tests emit
    events.event_type(_name, description="emitted by the test suite", subject="test")(_AnyPayload)


def require(condition: bool, what: str) -> None:
    """Skip when an outside system is missing; fail instead when CI demands everything."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{what} is required (LAMPLIGHTER_TEST_REQUIRE_ALL=1) but not available")
    pytest.skip(f"{what} not available")


def _worker_database(url: str) -> str:
    """The configured database, or for an xdist worker ``<name>_<worker>``, created once by
    the configured role (which has CREATEDB, see .ci/postgres.sh) and so owned by it."""
    if not XDIST_WORKER:
        return url
    base = sa.engine.make_url(url)
    name = f"{base.database}_{XDIST_WORKER}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.scalar(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        if not exists:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Argon2 at its lowest cost for the suite's own users; production keeps its cost
    (tests/core/test_passwords.py), and servers the browser tests start use it."""
    crypto.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield
    crypto.use_hasher(crypto.PRODUCTION_HASHER)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    if backend == "postgresql":
        require(bool(PG_URL), "PostgreSQL (LAMPLIGHTER_TEST_DATABASE_URL)")
        assert PG_URL
        url = _worker_database(PG_URL)
        _reset_postgres(url)
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'lamplighter.db'}"


@pytest.fixture(scope="session")
def database(database_url: str) -> Iterator[Database]:
    migrate.upgrade(database_url)
    database = Database(database_url)
    yield database
    database.dispose()


def truncate_all(database: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as connection:
        if database.is_sqlite:
            for name in tables:
                connection.execute(sa.text(f'DELETE FROM "{name}"'))
        else:
            joined = ", ".join(f'"{n}"' for n in tables)
            connection.execute(sa.text(f"TRUNCATE {joined} RESTART IDENTITY CASCADE"))


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    """The database, emptied after each test."""
    identity.AUTH_CACHE.clear()
    identity.LOGIN_THROTTLE = identity.LoginThrottle()
    yield database
    truncate_all(database)
    with database.transaction() as session:  # the migration's shipped data, back for the next test
        ticket_service.ensure_default_types(session=session)
    identity.AUTH_CACHE.clear()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        secret_key=TEST_SECRET,
        log_json=True,
        job_poll_s=0.05,
        job_backoff_base_s=0.05,
        templates_sync_on_start=False,  # tests register the templates they use
    )


@pytest.fixture
def app(settings: Settings, db: Database):
    return create_app(settings, db=db)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def frozen_clock() -> Iterator[clock.ManualClock]:
    """The application's clock, held still: the test moves it instead of sleeping."""
    with clock.frozen() as held:
        yield held


@pytest.fixture
def live_server(settings: Settings, db: Database) -> Iterator[str]:
    """The app served by uvicorn in a thread (for the CLI's remote mode); its base URL."""
    with helpers.serve(create_app(settings, db=db)) as base_url:
        yield base_url


@pytest.fixture
def cli_env(
    database_url: str, db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[None]:
    """The environment a local ``lamplighter`` command reads: the test database, no server."""
    monkeypatch.setenv("LAMPLIGHTER_DATABASE_URL", database_url)
    monkeypatch.setenv("LAMPLIGHTER_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LAMPLIGHTER_URL", raising=False)
    monkeypatch.delenv("LAMPLIGHTER_TOKEN", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def run_cli(cli_env: None) -> helpers.Invoke:
    """``run_cli("team", "list")`` runs ``lamplighter team list`` in-process."""
    return helpers.cli_invoker(cli.app)


# -- factories ---------------------------------------------------------------------------------
def make_user(
    db: Database,
    *,
    email: str | None = None,
    role: str = "member",
    password: str | None = None,
    time_zone: str = "UTC",
) -> User:
    email = email or f"user{next(_counter)}@example.com"
    with db.transaction() as session:
        return identity.create_user(
            session=session,
            actor=SYSTEM,
            email=email,
            display_name=email.split("@")[0].title(),
            role=role,
            password=password,
            time_zone=time_zone,
        )


def make_team(
    db: Database,
    *,
    slug: str | None = None,
    lead: User | None = None,
    members: list[User] | None = None,
    type: str = "team",
    parent: str | None = None,
) -> Team:
    lead = lead or make_user(db)
    slug = slug or f"team-{next(_counter)}"
    with db.transaction() as session:
        team = identity.create_team(
            session=session,
            actor=SYSTEM,
            slug=slug,
            name=slug.title(),
            lead_email=lead.email,
            type=type,
            parent=parent,
        )
        for member in members or []:
            identity.add_member(session=session, actor=SYSTEM, slug=slug, email=member.email)
    return team


def make_token(db: Database, user: User, name: str = "test") -> str:
    with db.transaction() as session:
        _, plaintext = identity.create_token(
            session=session, actor=SYSTEM, user_id=user.id, name=name
        )
    return plaintext


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
