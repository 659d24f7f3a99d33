"""create_app(settings): the FastAPI service. Upgrades the schema (alembic head),
imports the committed model folders, then serves the API; a background engine thread
drives deployments and the drift rule while the app runs."""
from __future__ import annotations

import importlib
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cloud.db import Database, upgrade
from cloud.engine import Engine
from cloud.metrics import Metrics
from cloud.services import ServiceError, deployments, registry
from cloud.settings import Settings

API_VERSION = "1.0.0"


def model_roots(settings: Settings) -> list[tuple[Path, str]]:
    return [(Path(settings.models_dir), "committed"), (Path(settings.data_dir) / "models", "retrained")]


def create_app(settings: Settings | None = None, engine: bool = True) -> FastAPI:
    settings = settings or Settings.from_env()
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    upgrade(db.engine)
    with db.session() as s:
        registry.scan(s, model_roots(settings))
        deployments.fleet_key(s, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.stopping.clear()
        loop = Engine(db, settings).start() if engine else None
        app.state.engine = loop
        try:
            yield
        finally:
            app.state.stopping.set()
            if loop:
                loop.stop()

    app = FastAPI(title="TinyFleet cloud", version=API_VERSION, lifespan=lifespan,
                  description="Ingest, fleet and model registries, retraining jobs and staged OTA deployments. "
                              "Every /api/v1 call needs `Authorization: Bearer <token>`; see docs/api.md.")
    app.state.settings, app.state.db = settings, db
    app.state.metrics = Metrics(db, settings)
    app.state.stopping = threading.Event()

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.middleware("http")
    async def refuse_nul(request: Request, call_next):
        """NUL in a path or query can never match anything, and PostgreSQL text refuses it."""
        if "%00" in request.url.path or "\x00" in request.url.path or b"%00" in request.scope.get("query_string", b""):
            return JSONResponse({"detail": "NUL characters are not allowed in paths or queries"}, status_code=422)
        return await call_next(request)

    from cloud.routers import deployments as r_dep
    from cloud.routers import fleet, health, ingest, jobs, models, stream
    for r in (health, ingest, fleet, models, jobs, r_dep, stream):
        app.include_router(r.router)
    try:
        dashboard = importlib.import_module("cloud.routers.dashboard")
    except ModuleNotFoundError as e:
        if e.name != "cloud.routers.dashboard":
            raise
    else:
        app.include_router(dashboard.router)
    return app
