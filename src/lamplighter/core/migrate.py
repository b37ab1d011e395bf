"""Alembic, driven from code: upgrade, and the check that refuses a database that is behind.

The check runs at every start (each CLI command, each server process, each ``/readyz``), so it
does not load Alembic: the newest revision comes from the migration files' ``revision`` and
``down_revision`` lines, the database's from its ``alembic_version`` table. Alembic itself (a
tenth of a second to import) is loaded only to upgrade.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lamplighter.core.db import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_REVISION_RE = re.compile(r"^revision\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN_RE = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(?:None|[\"']([^\"']+)[\"'])", re.M)


class DatabaseBehind(RuntimeError):
    pass


# Revisions of domains outside this repository, each a branch of its own (manifest.migrations).
EXTRA_VERSION_LOCATIONS: list[Path] = []


def add_version_location(path: Path) -> None:
    if path not in EXTRA_VERSION_LOCATIONS:
        EXTRA_VERSION_LOCATIONS.append(path)
        head_revision.cache_clear()


def remove_version_location(path: Path) -> None:
    if path in EXTRA_VERSION_LOCATIONS:
        EXTRA_VERSION_LOCATIONS.remove(path)
        head_revision.cache_clear()


def version_locations() -> list[Path]:
    return [MIGRATIONS_DIR / "versions", *EXTRA_VERSION_LOCATIONS]


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        os.pathsep.join(str(p).replace("%", "%%") for p in version_locations()),
    )
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest migration of each branch: the one revision no other names as its
    ``down_revision``. Several branches (plugin domains) read as their heads joined by "+",
    as :func:`current_revision` reads several rows."""
    heads: list[str] = []
    for location in version_locations():
        revisions: set[str] = set()
        parents: set[str] = set()
        for path in location.glob("*.py"):
            text = path.read_text(encoding="utf-8")
            revision, down = _REVISION_RE.search(text), _DOWN_RE.search(text)
            if revision is None or down is None:
                continue  # not a migration (the package's __init__)
            revisions.add(revision.group(1))
            if down.group(1):
                parents.add(down.group(1))
        found = revisions - parents
        if len(found) > 1:
            raise RuntimeError(
                f"the migrations in {location} have more than one head: {sorted(found)}"
            )
        heads.extend(found)
    return "+".join(sorted(heads)) if heads else None


def current_revision(engine: Engine) -> str | None:
    """The database's revision (None when it has none); several rows read as one unknown."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
        found = sorted(rows)
    return "+".join(found) if found else None


def upgrade(url: str, revision: str = "heads") -> None:
    from alembic import command

    make_engine(url).dispose()  # creates the SQLite file's directory if needed
    command.upgrade(alembic_config(url), revision)


def check_current(engine: Engine) -> None:
    """Raise DatabaseBehind, naming the fix, unless the database is at the newest revision."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        raise DatabaseBehind(
            f"the database is at revision {current or 'none (empty)'} but this Lamplighter needs {head}; "
            "run `lamplighter db upgrade` first"
        )
