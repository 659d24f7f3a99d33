"""Sites, nodes and telemetry."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from cloud.auth import ACT, READ, require
from cloud.models import Node
from cloud.routers.common import MAX_TS, db, settings
from cloud.schemas import NodeDetail, NodeOut, NodePatch, SiteOut, TelemetryOut
from cloud.services import events, fleet

router = APIRouter(prefix="/api/v1", tags=["fleet"])
NodeId = Path(min_length=1, max_length=64)


@router.get("/sites", response_model=list[SiteOut])
def sites(request: Request, role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return fleet.list_sites(s, events.now_ms(), settings(request))


@router.get("/nodes", response_model=list[NodeOut])
def nodes(request: Request, site: str | None = Query(None, max_length=64), model: str | None = Query(None, max_length=64),
          role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return fleet.list_nodes(s, events.now_ms(), settings(request), site=site, model=model)


def _one(s, request, node_id: str) -> dict:
    n = s.get(Node, node_id)
    if n is None:
        raise HTTPException(404, f"unknown node {node_id!r}")
    st = settings(request)
    now = events.now_ms()
    rates = fleet.anomaly_rates(s, now - int(st.anomaly_window_s * 1000), where=(fleet.Telemetry.node == node_id,))
    return fleet.node_out(n, now, st.online_window_s, rates)


@router.get("/nodes/{node_id}", response_model=NodeDetail)
def node(request: Request, node_id: str = NodeId, limit: int = Query(100, ge=1, le=5000),
         role: str = Depends(require(*READ))):
    with db(request).session() as s:
        out = _one(s, request, node_id)
        out["telemetry"] = fleet.telemetry(s, node=node_id, limit=limit)
        return out


@router.patch("/nodes/{node_id}", response_model=NodeOut)
def patch_node(request: Request, body: NodePatch, node_id: str = NodeId, role: str = Depends(require(*ACT))):
    with db(request).session() as s:
        n = s.get(Node, node_id)
        if n is None:
            raise HTTPException(404, f"unknown node {node_id!r}")
        n.tags = list(dict.fromkeys(body.tags))
        s.flush()
        out = _one(s, request, node_id)
        events.publish(s, events.STREAM, "node", out)
        return out


@router.get("/telemetry", response_model=list[TelemetryOut])
def telemetry(request: Request, node: str | None = Query(None, max_length=64),
              model: str | None = Query(None, max_length=64), site: str | None = Query(None, max_length=64),
              since: int | None = Query(None, ge=0, le=MAX_TS, description="epoch ms; records from here on"),
              limit: int = Query(500, ge=1, le=5000), role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return fleet.telemetry(s, node=node, model=model, since=since, limit=limit, site=site)
