"""Staged OTA deployments."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from cloud.auth import ACT, READ, require
from cloud.routers.common import db, settings
from cloud.schemas import DeploymentDetail, DeploymentIn, DeploymentOut
from cloud.services import deployments as dep
from cloud.services import events

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])
DepId = Path(min_length=1, max_length=64)


@router.post("", response_model=DeploymentDetail, status_code=201,
             responses={404: {"description": "unknown model version"},
                        409: {"description": "rejected or retired version"},
                        422: {"description": "bad body, unknown nodes, or no node matches"}})
def create(request: Request, body: DeploymentIn, role: str = Depends(require(*ACT))):
    st = settings(request)
    with dep.LOCK, db(request).session() as s:
        d = dep.create(s, st, body.model_dump())
        return dep.detail(s, d)


@router.get("", response_model=list[DeploymentOut])
def list_deployments(request: Request, role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return dep.list_all(s)


@router.get("/{dep_id}", response_model=DeploymentDetail)
def get_deployment(request: Request, dep_id: str = DepId, role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return dep.detail(s, dep.get(s, dep_id))


def _action(request: Request, dep_id: str, fn) -> dict:
    with dep.LOCK, db(request).session() as s:
        d = fn(s, dep.get(s, dep_id))
        s.flush()
        out = dep.detail(s, d)
        events.publish(s, events.STREAM, "deployment", dep.summary(s, d))
        return out


@router.post("/{dep_id}/pause", response_model=DeploymentDetail, responses={409: {"description": "not running"}})
def pause(request: Request, dep_id: str = DepId, role: str = Depends(require(*ACT))):
    return _action(request, dep_id, dep.pause)


@router.post("/{dep_id}/resume", response_model=DeploymentDetail, responses={409: {"description": "not paused"}})
def resume(request: Request, dep_id: str = DepId, role: str = Depends(require(*ACT))):
    return _action(request, dep_id, lambda s, d: dep.resume(s, settings(request), d))


@router.post("/{dep_id}/cancel", response_model=DeploymentDetail, responses={409: {"description": "finished"}})
def cancel(request: Request, dep_id: str = DepId, role: str = Depends(require(*ACT))):
    """Stops sending waves and withdraws pending offers; no rollback."""
    return _action(request, dep_id, dep.cancel)


@router.post("/{dep_id}/abort", response_model=DeploymentDetail, responses={409: {"description": "finished"}})
def abort(request: Request, dep_id: str = DepId, role: str = Depends(require(*ACT))):
    """Like cancel, and rolls the UPDATED nodes back to their previous version."""
    return _action(request, dep_id, lambda s, d: dep.abort(s, settings(request), d, "aborted by operator"))
