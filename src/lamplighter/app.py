"""Builds the FastAPI app from the domains' manifests (``lamplighter.domains``)."""

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
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Receive, Scope, Send

from lamplighter import __version__, domains
from lamplighter.core import fastpath, jobs, migrate, openapi, routing, webui
from lamplighter.core.crypto import SecretBox
from lamplighter.core.db import Database
from lamplighter.core.errors import PROBLEM_TYPES
from lamplighter.core.manifest import Manifest, resolve
from lamplighter.core.plugins import load_plugins
from lamplighter.core.settings import Settings, get_settings
from lamplighter.core.web import RequestContextMiddleware, install_error_handlers

log = logging.getLogger("lamplighter")
PACKAGE_DIR = Path(__file__).resolve().parent
SWAGGER_UI_VERSION = "5.36.0"  # templates/static/swagger/VENDORED.md; the cache-busting query


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


class LamplighterApp(FastAPI):
    """FastAPI, with the fast path's routes (``core/fastpath.py``) served before its stack."""

    fast_paths: fastpath.FastPaths | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        paths = self.fast_paths
        if paths is not None and scope["type"] == "http":
            found = paths.match(scope)
            if found is not None:
                await paths(scope, receive, send, *found)
                return
        await super().__call__(scope, receive, send)


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
    manifests = domains.manifests(settings)
    database = db or Database(settings.effective_database_url)
    if check_migrations:
        migrate.check_current(database.engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker: jobs.Worker | None = None
        thread: threading.Thread | None = None
        for manifest in manifests:
            for hook in manifest.on_start:
                on_start(manifest, hook, database, settings)
        if run_worker:
            worker = jobs.Worker(database, settings)
            thread = worker.start_thread()
        try:
            yield
        finally:
            if worker is not None and thread is not None:
                worker.stop()
                thread.join(timeout=10)

    app = LamplighterApp(
        title="Lamplighter",
        version=__version__,
        description="Self-serve reliability platform. Every error is an RFC 9457 problem document.",
        openapi_url="/api/v1/openapi.json",
        # The docs page is ours (api_docs below): FastAPI's default loads Swagger UI from a CDN,
        # which leaves it blank offline.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.box = SecretBox(settings.effective_secret_key())
    QUEUE_COLLECTOR.db = database

    include_domains(app, manifests)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "templates" / "static"), name="static")
    install_error_handlers(app, webui.render_error_page)
    openapi.install(app)  # every route's problem responses, derived from what it takes
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
        except sa.exc.DBAPIError as exc:
            # The driver's text names hosts, ports and users: the log gets it, anonymous
            # callers do not.
            log.warning("not ready", extra={"error": str(exc)[:300]})
            return JSONResponse(
                {"status": "unavailable"}, status_code=503, headers={"Retry-After": "1"}
            )
        except Exception as exc:  # the schema is behind: say which command fixes it
            log.warning("not ready", extra={"error": str(exc)[:300]})
            return JSONResponse(
                {"status": "unavailable", "reason": str(exc)[:300]},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        """Swagger UI, served from /static/swagger (vendored; see VENDORED.md there)."""
        return get_swagger_ui_html(
            openapi_url="/api/v1/openapi.json",
            title="Lamplighter API",
            swagger_js_url=f"/static/swagger/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}",
            swagger_css_url=f"/static/swagger/swagger-ui.css?v={SWAGGER_UI_VERSION}",
            swagger_favicon_url=f"/static/favicon.svg?v={__version__}",
            # No call to the public validator service: the page makes same-origin requests only.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/problems/{slug}", include_in_schema=False, response_class=HTMLResponse)
    def problem_type(slug: str, request: Request) -> Any:
        return webui.problem_type_page(request, slug, PROBLEM_TYPES.get(slug))

    routing.index_routes(app)  # after every route: lookup by path prefix, order-independent
    app.fast_paths = fastpath.install(app, default_limit=settings.max_body_bytes)
    return app


def include_domains(app: FastAPI, manifests: list[Manifest]) -> None:
    """Each domain's API routers under /api/v1 and its pages at the root; the navigation lists
    the manifests' entries, and nothing else."""
    for manifest in manifests:
        for reference in manifest.api:
            app.include_router(resolve(reference), prefix="/api/v1")
        for reference in manifest.pages:
            app.include_router(resolve(reference))
    webui.set_navigation([entry for manifest in manifests for entry in manifest.nav])


def on_start(manifest: Manifest, hook: str, database: Database, settings: Settings) -> None:
    """Run a domain's start-up hook; a failure is logged and the app serves on."""
    try:
        resolve(hook)(database, settings)
    except Exception:
        log.warning("start-up hook %s of %s failed", hook, manifest.name, exc_info=True)


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
