"""The operator dashboard: one static page and its assets, all served from
cloud/dashboard/ (no CDN). The page itself needs no token; its API calls do."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

ROOT = Path(__file__).resolve().parents[1] / "dashboard"
MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    return FileResponse(ROOT / "index.html", media_type=MEDIA[".html"], headers=NO_CACHE)


@router.get("/static/{filename}")
def asset(filename: str) -> FileResponse:
    """Only plain files directly in cloud/dashboard/ (no sub-paths, no dot-files)."""
    path = ROOT / filename
    if "/" in filename or "\\" in filename or filename.startswith(".") or path.suffix not in MEDIA \
            or not path.is_file():
        raise HTTPException(404, f"no dashboard asset {filename!r}")
    return FileResponse(path, media_type=MEDIA[path.suffix], headers=NO_CACHE)
