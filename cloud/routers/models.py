"""The model registry: versions, their artifacts, promote and retire."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse

from cloud.auth import ACT, READ, require
from cloud.routers.common import MAX_I31, db
from cloud.schemas import ModelOut, ModelVersionOut
from cloud.services import events, registry

router = APIRouter(prefix="/api/v1/models", tags=["models"])
Name = Path(min_length=1, max_length=64)
Version = Path(ge=0, le=MAX_I31)
MEDIA = {".png": "image/png", ".json": "application/json", ".tflite": "application/octet-stream",
         ".tfmb": "application/octet-stream", ".h": "text/plain", ".cc": "text/plain", ".c": "text/plain",
         ".py": "text/plain", ".keras": "application/octet-stream"}


@router.get("", response_model=list[ModelOut])
def list_models(request: Request, role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return registry.list_models(s)


@router.get("/{name}/{version}", response_model=ModelVersionOut)
def get_version(request: Request, name: str = Name, version: int = Version, role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return registry.version_out(registry.must_get(s, name, version))


@router.get("/{name}/{version}/artifacts/{filename}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}, "image/png": {}}}})
def artifact(request: Request, name: str = Name, version: int = Version, filename: str = Path(max_length=128),
             role: str = Depends(require(*READ))):
    with db(request).session() as s:
        path = registry.artifact(registry.must_get(s, name, version), filename)
    return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"), filename=filename,
                        content_disposition_type="inline")


def _act(request: Request, name: str, version: int, action) -> dict:
    with db(request).session() as s:
        mv = action(s, registry.must_get(s, name, version))
        out = registry.version_out(mv)
        events.publish(s, events.STREAM, "model", out)
        return out


@router.post("/{name}/{version}/promote", response_model=ModelVersionOut)
def promote(request: Request, name: str = Name, version: int = Version, role: str = Depends(require(*ACT))):
    """Makes this version active (the previous active one is retired). 409 for a rejected version."""
    return _act(request, name, version, registry.promote)


@router.post("/{name}/{version}/retire", response_model=ModelVersionOut)
def retire(request: Request, name: str = Name, version: int = Version, role: str = Depends(require(*ACT))):
    return _act(request, name, version, registry.retire)
