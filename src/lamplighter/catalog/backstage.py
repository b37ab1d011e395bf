"""Backstage compatibility: import ``catalog-info.yaml`` files, export the catalog as them.

    report = backstage.import_path(session=s, actor=a, path=Path("repo"), settings=settings)
    text = backstage.export_yaml(session=s)

An import reads a file or a directory (recursively, following Location targets), resolves every
reference with Backstage's defaults, and keeps what Backstage would keep: an invalid document is
reported and skipped, and so is every document that needs it; the rest of its file imports.
Oddities that Backstage tolerates (a relation to an entity not in the catalog yet, an owner Group
that is missing, a User without an e-mail) are imported and reported as warnings. ``strict``
skips a whole file on any error, for CI. What is left is written in the caller's transaction;
the caller commits once. Reading is in
``backstage_parse``, deciding in ``backstage_import``, writing in ``backstage_write`` and the way
back in ``backstage_export``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.orm import Session

from lamplighter.catalog.backstage_export import export_yaml, iter_documents
from lamplighter.catalog.backstage_fetch import UrlFetcher
from lamplighter.catalog.backstage_import import Batch, Progress, prefetch
from lamplighter.catalog.backstage_parse import Problem
from lamplighter.catalog.backstage_plan import authorize, plan_changes
from lamplighter.catalog.backstage_resolve import Resolver
from lamplighter.catalog.backstage_sources import (
    Fetcher,
    FileSystemSource,
    MappingSource,
    Source,
    SourceError,
    read_all,
)
from lamplighter.catalog.backstage_write import write_plan
from lamplighter.catalog.errors import ImportFailed
from lamplighter.catalog.schemas import ImportError_, ImportReport
from lamplighter.catalog.yaml_cache import DocumentCache, cache_for
from lamplighter.core import identity
from lamplighter.core.authz import require_writer
from lamplighter.core.context import Actor
from lamplighter.core.errors import FieldError
from lamplighter.core.outbound import Policy
from lamplighter.core.settings import Settings

__all__ = [
    "FileSystemSource",
    "MappingSource",
    "export_yaml",
    "import_files",
    "import_path",
    "import_source",
    "iter_documents",
]


def import_source(
    *,
    session: Session,
    actor: Actor,
    source: Source,
    prune: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    name_rules: Mapping[str, str] | None = None,
    max_file_bytes: int = 1024 * 1024,
    progress: Progress | None = None,
    cache: DocumentCache | None = None,
    fetcher: Fetcher | None = None,
) -> ImportReport:
    """Import catalog-info.yaml files; ``progress(phase, done, total)`` hears about each step;
    ``cache`` keeps the parsed YAML of unchanged files between imports."""
    require_writer(actor, "import into the catalog")
    on_file = (lambda done, total: progress("parse", done, total)) if progress else None
    files = read_all(
        source,
        max_bytes=max_file_bytes,
        name_rules=name_rules,
        on_file=on_file,
        cache=cache,
        fetcher=fetcher,
    )
    if cache is not None:
        cache.save()
    batch = Batch(files)
    batch.check_duplicates()
    world = prefetch(session, batch, prefix=source.prefix)
    resolver = Resolver(
        batch, world, prune=prune, may_create_teams=identity.may_create_teams(actor)
    )
    resolver.users()
    resolver.groups()
    resolver.entities()
    resolver.fail_dependents(strict=strict)
    plan = plan_changes(batch, world)
    authorize(session, actor, batch, world, plan, prune)
    if not dry_run:
        write_plan(
            session=session,
            actor=actor,
            plan=plan,
            world=world,
            prune=prune,
            root=source.root,
            files=len(files),
            errors=len(batch.problems),
            warnings=len(batch.warnings),
            progress=progress,
        )

    def ordered(items: list[Problem]) -> list[ImportError_]:
        return [
            ImportError_(file=p.file, document=p.document, field=p.field, reason=p.reason)
            for p in sorted(
                set(items),
                key=lambda p: (p.file, -1 if p.document is None else p.document, p.field, p.reason),
            )
        ]

    return ImportReport(
        created=[r.draft.ref for r in plan.creates],
        updated=[r.draft.ref for r, _ in plan.updates],
        unchanged=plan.unchanged,
        removed=[e.ref for e in plan.removed],
        pruned=prune and not dry_run,
        kept=plan.kept,
        teams_created=[t.slug for t in plan.teams],
        teams_updated=[t.slug for t, _ in plan.team_updates],
        users_created=[u.draft.ref for u in plan.users],
        errors=ordered(batch.problems),
        warnings=ordered(batch.warnings),
    )


def import_path(
    *,
    session: Session,
    actor: Actor,
    path: Path,
    settings: Settings,
    prune: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    fetch: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a catalog-info.yaml file or a directory of them; locations are absolute paths.
    ``fetch``: read URL targets and substitutions the fetch allowlist allows."""
    try:
        source = FileSystemSource(path)
    except SourceError as exc:
        raise ImportFailed(str(exc), errors=[FieldError("path", str(exc))]) from exc
    return import_source(
        session=session,
        actor=actor,
        source=source,
        prune=prune,
        dry_run=dry_run,
        strict=strict,
        name_rules=settings.catalog_name_rules,
        max_file_bytes=settings.catalog_max_file_bytes,
        progress=progress,
        cache=cache_for(settings.data_dir, str(path.resolve())),
        fetcher=_fetcher(settings) if fetch else None,
    )


def import_files(
    *,
    session: Session,
    actor: Actor,
    files: Mapping[str, str],
    settings: Settings,
    prune: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    fetch: bool = False,
) -> ImportReport:
    """Import files sent as text (name → content); locations are the names as sent."""
    if not files:
        raise ImportFailed("no files to import", errors=[FieldError("body.files", "is empty")])
    return import_source(
        session=session,
        actor=actor,
        source=MappingSource(files),
        prune=prune,
        dry_run=dry_run,
        strict=strict,
        name_rules=settings.catalog_name_rules,
        max_file_bytes=settings.catalog_max_file_bytes,
        fetcher=_fetcher(settings) if fetch else None,
    )


def _fetcher(settings: Settings) -> UrlFetcher:
    return UrlFetcher(
        settings.catalog_fetch_allowlist,
        max_bytes=settings.catalog_max_file_bytes,
        policy=Policy.from_settings(settings),
    )
