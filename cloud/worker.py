"""The retraining worker: a separate process (`python -m cloud.worker`, spawned by
`tinyfleet cloud serve`) that takes queued jobs from the database and runs them, so
training never blocks the API. Settings come from the same TINYFLEET_* variables."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time

from sqlalchemy import select

from cloud.db import Database, upgrade
from cloud.models import Job
from cloud.services import events, jobs, retraining
from cloud.settings import Settings


def _alive(worker: str | None) -> bool:
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return True


def fail_orphans(db: Database) -> None:
    """Jobs left `running` by a worker that died are failed, not silently lost."""
    with db.session() as s:
        for j in s.scalars(select(Job).where(Job.status == "running")):
            if not _alive(j.worker):
                jobs.note(s, j.id, f"worker {j.worker} died", None, status="failed",
                          error="worker died", finished=events.now_ms())


def main(settings: Settings | None = None, once: bool = False) -> int:
    settings = settings or Settings.from_env()
    db = Database(settings.database_url)
    upgrade(db.engine)
    me = f"{socket.gethostname()}:{os.getpid()}"
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    fail_orphans(db)
    print(f"tinyfleet worker {me} polling {settings.database_url.split('@')[-1]}", flush=True)
    while not stop:
        with db.session() as s:
            job = jobs.claim(s, me)
            job_id = job.id if job else None
        if job_id is None:
            if once:
                break
            time.sleep(settings.worker_poll_s)
            continue
        print(f"job {job_id}: running", flush=True)
        retraining.run(db, settings, job_id)
        print(f"job {job_id}: done", flush=True)
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
