"""The SSE outbox: rows in `events`, read by the gateway and dashboard streams.
A table (not an in-memory queue) so the worker process can publish too and a
gateway resumes after a restart with Last-Event-ID."""
from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.models import Event

STREAM = "stream"


def now_ms() -> int:
    return int(time.time() * 1000)


def gateway_channel(gateway: str) -> str:
    return "gw:" + gateway


def publish(s: Session, channel: str, kind: str, data: dict) -> None:
    s.add(Event(channel=channel, kind=kind, data=data, created=now_ms()))


def after(s: Session, channel: str, last_id: int, limit: int = 500) -> list[Event]:
    q = select(Event).where(Event.channel == channel, Event.id > last_id).order_by(Event.id).limit(limit)
    return list(s.scalars(q))


def last_id(s: Session, channel: str) -> int:
    from sqlalchemy import func
    return s.scalar(select(func.max(Event.id)).where(Event.channel == channel)) or 0


def prune(s: Session, keep_s: float) -> None:
    s.execute(delete(Event).where(Event.created < now_ms() - int(keep_s * 1000)))
