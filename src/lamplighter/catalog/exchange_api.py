"""Backstage import and export over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from lamplighter.catalog import backstage
from lamplighter.catalog.schemas import ImportReport, ImportRequest
from lamplighter.core.deps import CurrentActor, SessionDep, SettingsDep

router = APIRouter(prefix="/catalog", tags=["catalog"])
IMPORT_BODY_LIMIT = 50 * 1024 * 1024


@router.post(
    "/import",
    response_model=ImportReport,
    openapi_extra={"x-max-body-bytes": IMPORT_BODY_LIMIT},
)
def import_catalog(
    body: ImportRequest, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> ImportReport:
    """Import catalog-info.yaml files (name → text). An invalid document is skipped with the
    documents that need it, the rest imports (``strict``: a file with any error is skipped
    whole); the report names every error and warning by file, document (0-based) and field.
    Needs write access for every owning team the files mention; Groups and Users need the sre
    or admin role."""
    report = backstage.import_files(
        session=session,
        actor=actor,
        files=body.files,
        settings=settings,
        prune=body.prune,
        dry_run=body.dry_run,
        strict=body.strict,
        fetch=body.fetch,
    )
    if body.dry_run:
        session.rollback()
    else:
        session.commit()
    return report


@router.get(
    "/export",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}}, "description": "catalog-info.yaml"}},
)
def export_catalog(
    session: SessionDep,
    actor: CurrentActor,
    ref: Annotated[
        str | None,
        Query(max_length=200, description="One entity, e.g. component:default/ledger."),
    ] = None,
) -> Response:
    """The catalog (with its Groups and Users) or one entity, as multi-document YAML."""
    text = backstage.export_yaml(session=session, ref=ref)
    return Response(content=text, media_type="application/yaml")
