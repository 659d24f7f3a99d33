"""Liveness, readiness and Prometheus metrics (no token: probes and scrapers)."""
from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from cloud.routers.common import db

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"ok": True}


@router.get("/readyz")
def readyz(request: Request, response: Response) -> dict:
    try:
        with db(request).session() as s:
            s.execute(text("SELECT 1"))
    except Exception as e:  # the database is down or locked: not ready
        response.status_code = 503
        return {"ok": False, "error": type(e).__name__}
    return {"ok": True}


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")
