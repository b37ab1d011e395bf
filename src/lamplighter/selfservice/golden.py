"""The golden paths shipped with Lamplighter, and loading them (with the configured templates).

``golden/`` holds three templates: ``python-web-service`` (repository, CI, database, catalog),
``postgres-database`` (a database for an existing service, approved by the owning team's lead)
and ``access`` (access to a catalog resource). They declare ``owner: platform``.

**Owner.** :func:`load_golden` gives them to the team named by ``owner``; left out, to the team
``platform`` when it exists, else to the first team (by id) an SRE belongs to, else to the first
team. Each load gives them the owner it resolves (a changed owner is an update, audited). With no
team at all the shipped templates are reported as an error and nothing is created.

Loading is :func:`templates.sync_directory`: idempotent (an unchanged file changes nothing, a
changed one raises the template's version) and per file (one bad file does not stop the others).
When ``settings.templates_dir`` is set, that directory is synced after the shipped one, so an
organisation can override a golden path by shipping a file with the same ``name``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import yaml
from sqlalchemy.orm import Session

from lamplighter.core import people
from lamplighter.core.context import Actor
from lamplighter.core.db import Database
from lamplighter.core.errors import FieldError, LamplighterError
from lamplighter.core.models import Role, Team
from lamplighter.core.settings import Settings, get_settings
from lamplighter.selfservice import templates

# The actions the golden paths use: a template naming an unregistered action does not validate.
from lamplighter.selfservice.actions import git, pipeline, postgres, simple  # noqa: F401

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
SHIPPED_OWNER = "platform"  # the owner the shipped files declare

log = logging.getLogger("lamplighter.selfservice")


def default_owner(*, session: Session) -> Team | None:
    """The team shipped templates go to: ``platform``, else the first SRE's team, else the first."""
    platform = people.find_team_by_slug(session=session, slug=SHIPPED_OWNER)
    if platform is not None:
        return platform
    with_sre = people.first_team_with_role(session=session, role=Role.SRE)
    if with_sre is not None:
        return with_sre
    teams = people.all_teams(session=session)
    return teams[0] if teams else None


def _merge(into: templates.SyncResult, more: templates.SyncResult) -> None:
    into.created.extend(more.created)
    into.updated.extend(more.updated)
    into.unchanged.extend(more.unchanged)
    into.errors.extend(more.errors)


def _sync_shipped(*, session: Session, actor: Actor, owner: str) -> templates.SyncResult:
    if owner == SHIPPED_OWNER:
        return templates.sync_directory(session=session, actor=actor, path=GOLDEN_DIR)
    # Another owner: sync copies naming it, then point the templates back at the shipped files.
    with tempfile.TemporaryDirectory(prefix="lamplighter-golden-") as tmp:
        for file in sorted(GOLDEN_DIR.glob("*.yaml")):
            definition = templates.parse_yaml(file.read_text(encoding="utf-8"))
            definition["owner"] = owner
            (Path(tmp) / file.name).write_text(yaml.safe_dump(definition, sort_keys=False))
        result = templates.sync_directory(session=session, actor=actor, path=Path(tmp))
    for name in [*result.created, *result.updated]:
        template = templates.get(session=session, name=name)
        template.source_path = str(GOLDEN_DIR / Path(template.source_path or name).name)
    session.flush()
    return result


def load_golden(
    *,
    session: Session,
    actor: Actor,
    owner: str | None = None,
    settings: Settings | None = None,
) -> templates.SyncResult:
    """Create or update the shipped golden paths, then the templates in ``settings.templates_dir``."""
    settings = settings or get_settings()
    result = templates.SyncResult()
    if owner is None:
        team = default_owner(session=session)
        if team is None:
            result.errors.append(
                FieldError("golden: owner", "no team exists yet to own the shipped templates")
            )
        else:
            owner = team.slug
    if owner is not None:
        try:
            _merge(result, _sync_shipped(session=session, actor=actor, owner=owner))
        except LamplighterError as exc:
            result.errors.append(FieldError("golden: owner", exc.detail))
    if settings.templates_dir is not None:
        try:
            configured = templates.sync_directory(
                session=session, actor=actor, path=settings.templates_dir
            )
        except LamplighterError as exc:
            result.errors.extend(exc.errors or [FieldError("templates_dir", exc.detail)])
        else:
            _merge(result, configured)
    return result


def sync_on_start(database: Database, settings: Settings) -> None:
    """Bring the shipped golden paths and ``templates_dir`` into the database when the web app
    starts (``templates_sync_on_start``). Never stops the app: a bad file or a race with another
    starting process is logged and the app serves on."""
    if not settings.templates_sync_on_start:
        return
    try:
        with database.transaction() as session:
            result = load_golden(
                session=session, actor=Actor.system("template-sync"), settings=settings
            )
    except Exception:  # another process syncing at the same moment, a database hiccup
        log.warning(
            "template sync at start-up failed; run `lamplighter template sync`", exc_info=True
        )
        return
    for error in result.errors:
        log.warning("template sync: %s: %s", error.field, error.reason)
    if result.created or result.updated:
        log.info("template sync: %d created, %d updated", len(result.created), len(result.updated))
