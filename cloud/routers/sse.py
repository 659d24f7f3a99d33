"""Server-sent events from the `events` outbox table, polled; ids are the row ids."""
from __future__ import annotations

import asyncio
import json

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from cloud.services import events

KEEPALIVE_S = 15.0


def frame(e) -> str:
    return f"id: {e.id}\nevent: {e.kind}\ndata: {json.dumps(e.data, separators=(',', ':'))}\n\n"


def parse_last_id(request: Request, query_value: str | None) -> int | None:
    raw = request.headers.get("last-event-id") or query_value
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value < 2**62 else None


def stream(request: Request, channel: str, start: int, first: list | None = None) -> StreamingResponse:
    """Events on `channel` after id `start` (plus `first` replayed before them)."""
    db = request.app.state.db
    poll = request.app.state.settings.sse_poll_s

    def fetch(last):
        with db.session() as s:
            return events.after(s, channel, last)

    async def gen():
        last = start
        yield ": connected\n\n"
        for e in first or []:
            yield frame(e)
        idle = 0.0
        while not request.app.state.stopping.is_set():
            if await request.is_disconnected():
                break
            rows = await run_in_threadpool(fetch, last)
            for e in rows:
                yield frame(e)
                last = e.id
            if rows:
                idle = 0.0
                continue
            idle += poll
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield ": keepalive\n\n"
            await asyncio.sleep(poll)

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
