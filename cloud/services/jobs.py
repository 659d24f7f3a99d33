"""Retraining jobs: the database row is the queue (SKIP LOCKED on PostgreSQL, a guarded
UPDATE on SQLite); the drift rule enqueues jobs, rate-limited per (model, site)."""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.models import Job, ModelVersion, Site, Telemetry
from cloud.services import ServiceError, events, fleet

STATUSES = ("queued", "running", "succeeded", "rejected", "failed")


def known_models(s: Session) -> set[str]:
    names = set(s.scalars(select(ModelVersion.name).distinct()))
    try:
        from training.recipes import MODELS
        names |= set(MODELS)
    except ImportError:
        pass
    return names


def job_out(j: Job) -> dict:
    return {"id": j.id, "model": j.model, "site": j.site, "reason": j.reason, "trigger": j.trigger,
            "status": j.status, "progress": j.progress, "log": list(j.log or []), "result_version": j.result_version,
            "error": j.error, "created": j.created, "started": j.started, "finished": j.finished}


def create(s: Session, model: str, site: str | None, reason: str, trigger: str = "manual") -> Job:
    if model not in known_models(s):
        raise ServiceError(422, f"unknown model {model!r}")
    if site is not None and s.get(Site, site) is None:
        raise ServiceError(422, f"unknown site {site!r}")
    j = Job(model=model, site=site, reason=reason, trigger=trigger, status="queued", progress=0.0,
            log=[f"queued ({trigger}): {reason}"], created=events.now_ms())
    s.add(j)
    s.flush()
    events.publish(s, events.STREAM, "job", job_out(j))
    return j


def get(s: Session, job_id: int) -> Job:
    j = s.get(Job, job_id)
    if j is None:
        raise ServiceError(404, f"no job {job_id}")
    return j


def list_all(s: Session, limit: int = 200) -> list[dict]:
    return [job_out(j) for j in s.scalars(select(Job).order_by(Job.id.desc()).limit(limit))]


def claim(s: Session, worker: str) -> Job | None:
    """Takes the oldest queued job for this worker, or None."""
    if s.get_bind().dialect.name == "postgresql":
        j = s.scalars(select(Job).where(Job.status == "queued").order_by(Job.id)
                      .with_for_update(skip_locked=True).limit(1)).first()
        if j is None:
            return None
    else:
        jid = s.scalar(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1))
        if jid is None:
            return None
        res = s.execute(update(Job).where(Job.id == jid, Job.status == "queued").values(status="running"))
        if res.rowcount != 1:
            return None
        j = s.get(Job, jid)
        s.refresh(j)
    j.status, j.worker, j.started, j.progress = "running", worker, events.now_ms(), 0.0
    j.log = list(j.log or []) + [f"started by worker {worker}"]
    events.publish(s, events.STREAM, "job", job_out(j))
    return j


def note(s: Session, job_id: int, line: str | None = None, progress: float | None = None, **fields) -> Job:
    """Appends a log line / sets progress and other fields, and tells the dashboard."""
    j = s.get(Job, job_id)
    if line:
        j.log = list(j.log or []) + [line]
    if progress is not None:
        j.progress = max(0.0, min(1.0, progress))
    for k, v in fields.items():
        setattr(j, k, v)
    events.publish(s, events.STREAM, "job", job_out(j))
    return j


def drift_check(s: Session, settings, now: int | None = None) -> list[Job]:
    """Starts an `anomaly` retraining job for every site whose anomaly rate over the drift
    window passed the threshold, at most one per (model, site) per cooldown."""
    if not settings.drift_enabled:
        return []
    now = now or events.now_ms()
    rates = fleet.anomaly_rates(s, now - int(settings.drift_window_s * 1000), group=Telemetry.site)
    started = []
    for site, (rate, n) in sorted(rates.items()):
        if n < settings.drift_min_samples or rate < settings.drift_threshold:
            continue
        recent = s.scalar(select(Job.id).where(
            Job.model == "anomaly", Job.site == site,
            (Job.created >= now - int(settings.drift_cooldown_s * 1000)) | Job.status.in_(("queued", "running")))
            .limit(1))
        if recent is not None:
            continue
        started.append(create(s, "anomaly", site,
                              f"drift: anomaly rate {rate:.2f} over {n} windows >= {settings.drift_threshold:g}",
                              trigger="drift"))
    return started
