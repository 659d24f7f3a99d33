"""The gateway side of the contract: ingest, the gateway's event stream, blobs."""
from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from sqlalchemy import select

from cloud.auth import BLOBS, GATEWAY, require
from cloud.models import Deployment
from cloud.routers import sse
from cloud.routers.common import db
from cloud.schemas import INGEST_BODY_SCHEMA, IngestResult
from cloud.services import deployments, events, ingest, registry
from contract import protocol

router = APIRouter(prefix="/api/v1", tags=["gateway"])


@router.post(protocol.INGEST_PATH[len("/api/v1"):], response_model=IngestResult,
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/json": {"schema": INGEST_BODY_SCHEMA}}}},
             responses={413: {"description": "too many records or too large a body"},
                        422: {"description": "bad input; nothing stored"}})
async def post_ingest(request: Request, role: str = Depends(require(*GATEWAY))) -> dict:
    """One gateway batch, stored in one transaction; idempotent on (node, seq)."""
    app = request.app
    settings, m = app.state.settings, app.state.metrics
    t0 = time.perf_counter()
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        m.batches.labels("refused").inc()
        raise HTTPException(413, f"body of {declared} bytes exceeds {settings.max_body_bytes}")
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > settings.max_body_bytes:
            m.batches.labels("refused").inc()
            raise HTTPException(413, f"body exceeds {settings.max_body_bytes} bytes")
    try:
        body = ingest.read_body(bytes(raw), request.headers.get("content-encoding"), settings.max_inflated_bytes)
        lists = ingest.validate_batch(body, nul_checked=True)
    except ingest.IngestError as e:
        m.batches.labels("refused").inc()
        raise HTTPException(e.status, e.detail)

    def write():
        lock = deployments.LOCK if lists["ota_states"] else _NoLock()
        with lock, app.state.db.session() as s:
            return ingest.store(s, body, lists, settings)

    from starlette.concurrency import run_in_threadpool
    accepted, duplicates = await run_in_threadpool(write)
    m.batches.labels("stored").inc()
    m.records.labels("telemetry").inc(accepted)
    for kind in ("heartbeats", "statuses", "ota_states"):
        m.records.labels(kind).inc(len(lists[kind]))
    m.duplicates.inc(duplicates)
    m.latency.observe(time.perf_counter() - t0)
    return {"accepted": accepted, "duplicates": duplicates}


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@router.get(protocol.EVENTS_PATH[len("/api/v1"):], response_class=Response,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`deployment` and `cancel` events (docs/protocol.md)"}})
def gateway_events(request: Request, gateway: str = Path(min_length=1, max_length=protocol.MAX_ID_LEN,
                                                        pattern=r"^[A-Za-z0-9._-]+$"),
                   last_event_id: str | None = Query(None, description="same as the Last-Event-ID header"),
                   role: str = Depends(require(*GATEWAY))):
    """SSE for one gateway. Without Last-Event-ID it first replays the events of the
    deployments that are still running or paused, then follows live."""
    channel = events.gateway_channel(gateway)
    start = sse.parse_last_id(request, last_event_id)
    first = []
    with db(request).session() as s:
        top = events.last_id(s, channel)
        if start is None:
            live = set(s.scalars(select(Deployment.id).where(Deployment.state.in_(deployments.ACTIVE))))
            first = [e for e in events.after(s, channel, 0, limit=100000)
                     if e.data.get("deployment") in live and e.id <= top]
            start = top
    return sse.stream(request, channel, start, first)


@router.get(protocol.BLOB_PATH[len("/api/v1"):], response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, 404: {"description": "unknown blob"}})
def get_blob(request: Request, sha256: str = Path(pattern=r"^[0-9a-f]{64}$"),
             role: str = Depends(require(*BLOBS))) -> Response:
    with db(request).session() as s:
        mv = registry.by_sha(s, sha256)
        if mv is None:
            raise HTTPException(404, f"no blob {sha256}")
        data = registry.blob(mv)
    return Response(data, media_type="application/octet-stream",
                    headers={"ETag": f'"{sha256}"', "Cache-Control": "public, max-age=31536000, immutable"})
