"""The dashboard's live feed: `telemetry`, `node`, `deployment`, `job` (and `model`) events."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from cloud.auth import READ, require_query_ok
from cloud.routers import sse
from cloud.routers.common import db
from cloud.services import events

router = APIRouter(prefix="/api/v1", tags=["stream"])


@router.get("/stream", response_class=Response,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
def stream(request: Request, last_event_id: str | None = Query(None, description="same as Last-Event-ID"),
           role: str = Depends(require_query_ok(*READ))):
    """SSE. EventSource cannot set headers, so `?token=` is accepted here."""
    start = sse.parse_last_id(request, last_event_id)
    if start is None:
        with db(request).session() as s:
            start = events.last_id(s, events.STREAM)
    return sse.stream(request, events.STREAM, start)
