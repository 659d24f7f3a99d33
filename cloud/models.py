"""Tables. Every time is epoch milliseconds (BigInteger), like the contract's `ts`; the
telemetry table also keeps a timestamptz `time` column so it can become a TimescaleDB
hypertable (then its unique key must include `time`: `create_hypertable('telemetry','time')`
after replacing uq_telemetry_node_seq by (node, seq, time))."""
from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(64)


class Base(DeclarativeBase):
    pass


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    gateway: Mapped[str | None] = mapped_column(ID)
    first_seen: Mapped[int] = mapped_column(BigInteger)
    last_seen: Mapped[int] = mapped_column(BigInteger)


class Node(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    site: Mapped[str] = mapped_column(ID, index=True)
    gateway: Mapped[str | None] = mapped_column(ID)
    board: Mapped[str | None] = mapped_column(String(64))
    fw: Mapped[str | None] = mapped_column(String(64))
    runtime: Mapped[int | None] = mapped_column(Integer)
    models: Mapped[dict] = mapped_column(JSON, default=dict)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    state: Mapped[str | None] = mapped_column(String(16))   # last status: online | offline
    free_mem: Mapped[int | None] = mapped_column(BigInteger)
    uptime: Mapped[int | None] = mapped_column(BigInteger)
    first_seen: Mapped[int] = mapped_column(BigInteger)
    last_seen: Mapped[int] = mapped_column(BigInteger, index=True)
    last_result: Mapped[dict | None] = mapped_column(JSON)


class Telemetry(Base):
    __tablename__ = "telemetry"
    __table_args__ = (
        UniqueConstraint("node", "seq", name="uq_telemetry_node_seq"),
        Index("ix_telemetry_node_ts", "node", "ts"),
        Index("ix_telemetry_site_model_ts", "site", "model", "ts"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    time: Mapped[object] = mapped_column(DateTime(timezone=True))
    ts: Mapped[int] = mapped_column(BigInteger)
    node: Mapped[str] = mapped_column(ID)
    seq: Mapped[int] = mapped_column(BigInteger)
    site: Mapped[str] = mapped_column(ID)
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[int] = mapped_column(Integer)
    result: Mapped[object] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float)
    anomaly: Mapped[bool | None] = mapped_column(Boolean)     # model 'anomaly' said 1; None for other models
    features: Mapped[list | None] = mapped_column(JSON)
    batch_id: Mapped[str | None] = mapped_column(String(128))


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))          # candidate | active | retired | rejected
    path: Mapped[str] = mapped_column(Text)                  # artifact folder
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    sizes: Mapped[dict] = mapped_column(JSON, default=dict)  # filename -> bytes
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    checks: Mapped[dict] = mapped_column(JSON, default=dict)  # held-out + regression check results
    parent_version: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[str | None] = mapped_column(Text)           # lineage: which data trained it
    source: Mapped[str] = mapped_column(String(16))          # committed | retrained
    job_id: Mapped[int | None] = mapped_column(Integer)
    created: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(64))
    site: Mapped[str | None] = mapped_column(ID)
    reason: Mapped[str] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(16))          # manual | drift
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | succeeded | rejected | failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    log: Mapped[list] = mapped_column(JSON, default=list)
    result_version: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)
    started: Mapped[int | None] = mapped_column(BigInteger)
    finished: Mapped[int | None] = mapped_column(BigInteger)


class Deployment(Base):
    __tablename__ = "deployments"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    target: Mapped[dict] = mapped_column(JSON)
    canary: Mapped[int] = mapped_column(Integer)
    wave: Mapped[dict] = mapped_column(JSON)
    abort: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)  # running | paused | succeeded | aborted | canceled
    reason: Mapped[str | None] = mapped_column(Text)
    rollback_of: Mapped[str | None] = mapped_column(ID)       # set on the automatic rollback deployment
    rollback: Mapped[str | None] = mapped_column(ID)          # id of this deployment's rollback
    created: Mapped[int] = mapped_column(BigInteger)
    updated: Mapped[int] = mapped_column(BigInteger)
    next_wave_at: Mapped[int | None] = mapped_column(BigInteger)


class DeploymentNode(Base):
    __tablename__ = "deployment_nodes"
    deployment: Mapped[str] = mapped_column(ID, ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    node: Mapped[str] = mapped_column(ID, primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)             # version this node is sent
    prev_version: Mapped[int | None] = mapped_column(Integer)  # what it ran before (rollback target)
    state: Mapped[str] = mapped_column(String(16))            # PENDING, contract states, CANCELED
    reason: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[float | None] = mapped_column(Float)
    sent_at: Mapped[int | None] = mapped_column(BigInteger)
    updated: Mapped[int] = mapped_column(BigInteger)


class Event(Base):
    """Outbox of server-sent events; `id` is the SSE id (Last-Event-ID resumes after it).
    channel: 'gw:<gateway>' for a gateway, 'stream' for the dashboard."""
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_channel_id", "channel", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict] = mapped_column(JSON)
    created: Mapped[int] = mapped_column(BigInteger)


class Secret(Base):
    """Server-side keys (the fleet HMAC key when settings do not give one)."""
    __tablename__ = "secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
