"""Request and response bodies. Names of wire fields are the contract's
(contract/protocol.py); the rest are this API's own, listed in docs/api.md.
Strict: a string is never coerced into a number, a boolean never counts as one."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract import protocol

ID_PATTERN = r"^[A-Za-z0-9._-]+$"
NodeId = Annotated[str, Field(min_length=1, max_length=protocol.MAX_ID_LEN, pattern=ID_PATTERN)]
Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._:-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


# ------------------------------------------------------------------ ingest (contract)

class IngestResult(BaseModel):
    accepted: int
    duplicates: int


INGEST_BODY_SCHEMA = {
    "type": "object",
    "required": ["v", "gateway", "site", "batch_id"],
    "properties": {
        "v": {"type": "integer", "enum": [protocol.SCHEMA]},
        "gateway": {"type": "string"}, "site": {"type": "string"}, "batch_id": {"type": "string"},
        "telemetry": {"type": "array", "maxItems": protocol.MAX_BATCH_RECORDS, "items": {
            "type": "object", "required": ["node", "seq", "ts", "model", "model_version", "result", "score"],
            "properties": {"node": {"type": "string"}, "seq": {"type": "integer"}, "ts": {"type": "integer"},
                           "model": {"type": "string"}, "model_version": {"type": "integer"},
                           "result": {"oneOf": [{"type": "number"}, {"type": "string"}]},
                           "score": {"type": "number"},
                           "features": {"type": "array", "items": {"type": "number"}}}}},
        "heartbeats": {"type": "array", "items": {"type": "object"}},
        "statuses": {"type": "array", "items": {"type": "object"}},
        "ota_states": {"type": "array", "items": {"type": "object"}},
    },
}


# ------------------------------------------------------------------ fleet

class NodePatch(Strict):
    tags: list[Tag] = Field(max_length=64)


class NodeOut(BaseModel):
    id: str
    site: str
    gateway: str | None
    board: str | None
    fw: str | None
    runtime: int | None
    models: dict[str, int]
    last_seen: int
    online: bool
    tags: list[str]
    last_result: dict | None
    anomaly_rate: float | None
    free_mem: int | None = None
    uptime: int | None = None


class TelemetryOut(BaseModel):
    node: str
    seq: int
    ts: int
    site: str
    model: str
    model_version: int
    result: float | int | str
    score: float
    features: list[float] | None = None


class NodeDetail(NodeOut):
    telemetry: list[TelemetryOut]


class SiteOut(BaseModel):
    id: str
    gateway: str | None
    nodes: int
    online: int
    last_seen: int
    anomaly_rate: float | None


# ------------------------------------------------------------------ models

class ModelVersionOut(BaseModel):
    name: str
    version: int
    status: Literal["candidate", "active", "retired", "rejected"]
    sha256: str | None
    sizes: dict[str, int]
    metrics: dict
    checks: dict
    lineage: dict
    artifacts: list[str]
    source: str
    job_id: int | None
    created: int


class ModelOut(BaseModel):
    name: str
    active: int | None
    versions: list[ModelVersionOut]


# ------------------------------------------------------------------ jobs

class JobIn(Strict):
    model: Name
    site: NodeId | None = None
    reason: str = Field(default="manual", max_length=500, pattern=r"^[^\x00]*$")


class JobOut(BaseModel):
    id: int
    model: str
    site: str | None
    reason: str
    trigger: str
    status: Literal["queued", "running", "succeeded", "rejected", "failed"]
    progress: float
    log: list[str]
    result_version: int | None
    error: str | None
    created: int
    started: int | None
    finished: int | None


# ------------------------------------------------------------------ deployments

class Target(Strict):
    site: NodeId | None = None
    tags: list[Tag] | None = Field(default=None, max_length=64)
    nodes: list[NodeId] | None = Field(default=None, max_length=10000)


class WaveIn(Strict):
    mode: Literal["constant", "exponential"] = "constant"
    size: int = Field(default=1, ge=1, le=100000)
    interval_s: float = Field(default=5.0, ge=0, le=86400)


class AbortIn(Strict):
    failure_pct: float = Field(default=20.0, ge=0, le=100)
    min_nodes: int = Field(default=1, ge=1, le=100000)


class DeploymentIn(Strict):
    model: Name
    version: int = Field(ge=1, le=2**31 - 1)
    target: Target
    canary: int = Field(default=1, ge=0, le=100000)
    wave: WaveIn = WaveIn()
    abort: AbortIn = AbortIn()


class DeploymentNodeOut(BaseModel):
    node: str
    wave: int
    version: int
    prev_version: int | None
    state: str
    reason: str | None
    progress: float | None
    sent_at: int | None
    updated: int


class WaveOut(BaseModel):
    index: int
    canary: bool
    size: int
    sent_at: int | None
    states: dict[str, int]
    finished: int


class DeploymentOut(BaseModel):
    id: str
    model: str
    version: int
    target: dict
    canary: int
    wave: dict
    abort: dict
    state: str
    reason: str | None
    rollback_of: str | None
    rollback: str | None
    created: int
    updated: int
    counts: dict[str, int]
    failure_pct: float
    waves: list[WaveOut]


class DeploymentDetail(DeploymentOut):
    nodes: list[DeploymentNodeOut]
