"""Retraining jobs; the worker process runs them."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from cloud.auth import ACT, READ, require
from cloud.routers.common import MAX_I31, db
from cloud.schemas import JobIn, JobOut
from cloud.services import jobs

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


@router.post("", response_model=JobOut, status_code=201)
def create(request: Request, body: JobIn, role: str = Depends(require(*ACT))):
    with db(request).session() as s:
        return jobs.job_out(jobs.create(s, body.model, body.site, body.reason, trigger="manual"))


@router.get("", response_model=list[JobOut])
def list_jobs(request: Request, role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return jobs.list_all(s)


@router.get("/{job_id}", response_model=JobOut)
def get_job(request: Request, job_id: int = Path(ge=1, le=MAX_I31), role: str = Depends(require(*READ))):
    with db(request).session() as s:
        return jobs.job_out(jobs.get(s, job_id))
