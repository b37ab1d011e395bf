"""Builds the FastAPI app from each domain's api.py and pages.py."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import lamplighter.models_registry  # noqa: F401 - every table is known before the app starts
from lamplighter import __version__
from lamplighter.catalog import api as catalog_api
from lamplighter.catalog import exchange_api as catalog_exchange_api
from lamplighter.catalog import pages as catalog_pages
from lamplighter.core import api as core_api
from lamplighter.core import inbox_pages, jobs, migrate, oidc, webui
from lamplighter.core import pages as core_pages
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.errors import PROBLEM_TYPES
from lamplighter.core.plugins import load_plugins
from lamplighter.core.settings import Settings, get_settings
from lamplighter.core.web import RequestContextMiddleware, install_error_handlers
from lamplighter.selfservice import api as selfservice_api
from lamplighter.selfservice import pages as selfservice_pages
from lamplighter.tickets import analytics_api as tickets_analytics_api
from lamplighter.tickets import analytics_pages as tickets_analytics_pages
from lamplighter.tickets import api as tickets_api
from lamplighter.tickets import pages as tickets_pages
from lamplighter.tickets import type_pages as tickets_type_pages

log = logging.getLogger("lamplighter")
PACKAGE_DIR = Path(__file__).resolve().parent


class QueueCollector(Collector):
    """Job queue depth and the age of the oldest due job, read from the database at scrape time."""

    def __init__(self) -> None:
        self.db: Database | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.db is None:
            return
        with self.db.sessionmaker() as session:
            depth, oldest_age = jobs.queue_stats(session=session)
        yield GaugeMetricFamily(
            "lamplighter_jobs_queue_depth", "Jobs due and waiting for a worker", value=depth
        )
        yield GaugeMetricFamily(
            "lamplighter_jobs_oldest_due_age_seconds",
            "How long the oldest due job has waited",
            value=oldest_age,
        )


QUEUE_COLLECTOR = QueueCollector()
REGISTRY.register(QUEUE_COLLECTOR)


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    run_worker: bool = False,
    check_migrations: bool = True,
) -> FastAPI:
    """Build the app. Refuses to start on a database that is behind its migrations."""
    settings = settings or get_settings()
    load_plugins(settings)
    database = db or Database(settings.effective_database_url)
    if check_migrations:
        migrate.check_current(database.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker: jobs.Worker | None = None
        thread: threading.Thread | None = None
        if settings.templates_sync_on_start:
            sync_templates(database, settings)
        if run_worker:
            worker = jobs.Worker(database, settings)
            thread = worker.start_thread()
        try:
            yield
        finally:
            if worker is not None and thread is not None:
                worker.stop_event.set()
                thread.join(timeout=10)

    app = FastAPI(
        title="Lamplighter",
        version=__version__,
        description="Self-serve reliability platform. Every error is an RFC 9457 problem document.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.box = SecretBox(settings.effective_secret_key())
    QUEUE_COLLECTOR.db = database

    # A request is matched against the routes in order: the catalog's entity reads, the
    # busiest, come first (no other prefix overlaps theirs but self-service's, which stays
    # before them for its /catalog/entities/{kind}/{namespace}/{name}/grants).
    app.include_router(selfservice_api.router, prefix="/api/v1")
    app.include_router(catalog_api.router, prefix="/api/v1")
    app.include_router(catalog_exchange_api.router, prefix="/api/v1")
    # Before the ticket routes: /tickets/analytics must not be taken for /tickets/{ticket_id}.
    app.include_router(tickets_analytics_api.router, prefix="/api/v1")
    app.include_router(tickets_api.router, prefix="/api/v1")
    app.include_router(core_api.router, prefix="/api/v1")
    app.include_router(oidc.router)
    app.include_router(catalog_pages.router)  # before the core pages and their placeholders
    app.include_router(tickets_analytics_pages.router)  # before /tickets/{ticket_id}
    app.include_router(tickets_type_pages.router)  # before /tickets/{ticket_id}
    app.include_router(tickets_pages.router)
    app.include_router(inbox_pages.router)
    app.include_router(selfservice_pages.router)  # before the core pages' placeholders
    app.include_router(core_pages.router)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "templates" / "static"), name="static")
    install_error_handlers(app, webui.render_error_page)
    app.add_middleware(
        RequestContextMiddleware, default_limit=settings.max_body_bytes, fastapi_app=app
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        """The database answers and its schema is current."""
        try:
            with database.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            migrate.check_current(database.engine)
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "reason": str(exc)[:300]}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/problems/{slug}", include_in_schema=False, response_class=HTMLResponse)
    def problem_type(slug: str, request: Request) -> Any:
        return webui.problem_type_page(request, slug, PROBLEM_TYPES.get(slug))

    return app


def sync_templates(database: Database, settings: Settings) -> None:
    """Bring the shipped golden paths and ``templates_dir`` into the database. Never stops the
    app: a bad file or a race with another starting process is logged and the app serves on."""
    from lamplighter.core.context import Actor
    from lamplighter.selfservice.golden import load_golden

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


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-process serving: settings from the environment."""
    from lamplighter.core.logs import configure

    settings = get_settings()
    configure(settings.log_level, settings.log_json)
    app = create_app(settings)
    # Everything built so far lives as long as the process: keep the cyclic garbage collector
    # from walking it again and again under load.
    gc.collect()
    gc.freeze()
    return app
