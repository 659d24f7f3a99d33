"""The API process's background loop: deployment waves, timeouts and abort rules, the
drift rule, and pruning of old SSE events. A thread, because all of it is short
database work; training runs in the worker process, never here."""
from __future__ import annotations

import logging
import threading
import time

from cloud.services import deployments, events, jobs

log = logging.getLogger("tinyfleet.cloud.engine")


class Engine:
    def __init__(self, db, settings):
        self.db, self.settings = db, settings
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self._last_prune = 0.0
        self._last_drift = 0.0

    def step(self) -> None:
        with deployments.LOCK, self.db.session() as s:
            deployments.tick(s, self.settings)
        if time.monotonic() - self._last_drift >= self.settings.drift_check_s:
            self._last_drift = time.monotonic()
            with self.db.session() as s:
                jobs.drift_check(s, self.settings)
        if time.monotonic() - self._last_prune > 60:
            self._last_prune = time.monotonic()
            with self.db.session() as s:
                events.prune(s, self.settings.event_keep_s)

    def run(self) -> None:
        while not self.stop_event.wait(self.settings.engine_tick_s):
            try:
                self.step()
            except Exception:  # a bad tick must not kill the loop; the next one retries
                log.exception("engine step failed")

    def start(self) -> "Engine":
        self.thread = threading.Thread(target=self.run, name="tinyfleet-engine", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout=10)
