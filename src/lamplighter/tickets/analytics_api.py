"""Toil analytics (JSON and CSV) and the import of ticket history over HTTP.

Include this router *before* ``tickets.api.router``: ``/tickets/analytics`` would otherwise be
taken for ``/tickets/{ticket_id}``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field, ValidationError
from starlette.datastructures import UploadFile

from lamplighter.core.deps import CurrentActor, SessionDep
from lamplighter.core.errors import FieldError, ValidationFailed
from lamplighter.core.schemas import WriteModel
from lamplighter.core.web import BODY_LIMIT_KEY
from lamplighter.tickets import analytics, import_formats, imports

router = APIRouter(tags=["tickets"])
IMPORT_BODY_LIMIT = 64 * 1024 * 1024

SinceQuery = Annotated[
    dt.date | None, Query(description="First day (UTC), included; default: 90 days ago")
]
UntilQuery = Annotated[
    dt.date | None, Query(description="Last day (UTC), included; default: today")
]
TeamQuery = Annotated[
    str | None, Query(max_length=63, description="Only tickets assigned to this team (slug)")
]


class ImportRequest(WriteModel):
    """The JSON form of an import: the file's text in ``content``."""

    format: str = Field(pattern="^(csv|jira-csv|jira-json)$")
    content: str = Field(min_length=1, description="The file's text (UTF-8)")
    mapping: dict[str, Any] | None = Field(default=None, description="Field and value mapping")
    dry_run: bool = Field(default=False, description="Check and count; write nothing")


@router.get("/tickets/analytics", response_model=analytics.ToilReport)
def toil_analytics(
    session: SessionDep,
    actor: CurrentActor,
    since: SinceQuery = None,
    until: UntilQuery = None,
    team: TeamQuery = None,
) -> analytics.ToilReport:
    """Toil per request type (count, effort, time to done, self-service and automated shares,
    weekly trend aligned with ``weeks``), automation candidates, demand per requesting team and
    load per person (with work logged outside their working hours)."""
    return analytics.toil_report(session=session, since=since, until=until, team=team)


@router.get(
    "/tickets/analytics.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per request type"}},
)
def toil_analytics_csv(
    session: SessionDep,
    actor: CurrentActor,
    since: SinceQuery = None,
    until: UntilQuery = None,
    team: TeamQuery = None,
) -> Response:
    """The per-type table of the toil analytics as CSV."""
    report = analytics.toil_report(session=session, since=since, until=until, team=team)
    name = f"toil-{report.since.isoformat()}-{report.until.isoformat()}.csv"
    return Response(
        content=analytics.types_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(
    "/tickets/import",
    response_model=imports.ImportReport,
    status_code=201,
    responses={200: {"description": "Dry run: what would be created"}},
    openapi_extra={
        BODY_LIMIT_KEY: IMPORT_BODY_LIMIT,
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "format"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "format": {"type": "string", "enum": list(import_formats.FORMATS)},
                            "mapping": {"type": "string", "description": "JSON mapping"},
                            "dry_run": {"type": "boolean"},
                        },
                    }
                },
                "application/json": {"schema": ImportRequest.model_json_schema()},
            },
        },
    },
)
async def import_tickets(
    request: Request, response: Response, session: SessionDep, actor: CurrentActor
) -> imports.ImportReport:
    """Import ticket history (SREs and admins): a multipart upload (``file``, ``format``,
    optional ``mapping`` as JSON text, ``dry_run``) or JSON with the file's text in ``content``.
    The whole file is checked first; any bad row and nothing is written (422 naming each row and
    column). Rows imported before (same source id) are skipped. 201, or 200 for a dry run."""
    imports.require_importer(actor)  # before reading a body of up to 64 MiB
    body = await _import_body(request)

    def run() -> imports.ImportReport:
        report = imports.import_tickets(
            session=session,
            actor=actor,
            data=body.content_bytes,
            fmt=body.format,
            mapping=body.mapping,
            dry_run=body.dry_run,
        )
        if body.dry_run:
            session.rollback()
        else:
            session.commit()
        return report

    report = await run_in_threadpool(run)
    if report.dry_run:
        response.status_code = 200
    return report


class _ImportBody:
    def __init__(
        self, content: bytes, fmt: str, mapping: dict[str, Any] | None, dry_run: bool
    ) -> None:
        self.content_bytes = content
        self.format = fmt
        self.mapping = mapping
        self.dry_run = dry_run


async def _import_body(request: Request) -> _ImportBody:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed.one("body.file", "attach the file to import as 'file'")
        mapping = None
        if raw_mapping := form.get("mapping"):
            try:
                mapping = orjson.loads(str(raw_mapping))
            except orjson.JSONDecodeError as exc:
                raise ValidationFailed.one("body.mapping", f"not valid JSON: {exc}") from exc
            if not isinstance(mapping, dict):
                raise ValidationFailed.one("body.mapping", "must be a JSON object")
        fmt = str(form.get("format") or "")
        if fmt not in import_formats.FORMATS:
            raise ValidationFailed.one("body.format", f"one of {', '.join(import_formats.FORMATS)}")
        dry_run = str(form.get("dry_run") or "").lower() in {"1", "true", "yes", "on"}
        return _ImportBody(await upload.read(), fmt, mapping, dry_run)
    try:
        body = ImportRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise ValidationFailed(
            "the import body is not valid",
            errors=[
                FieldError(".".join(["body", *(str(p) for p in e["loc"])]), e["msg"])
                for e in exc.errors()
            ],
        ) from exc
    return _ImportBody(body.content.encode(), body.format, body.mapping, body.dry_run)
