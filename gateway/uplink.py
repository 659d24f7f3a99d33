"""Outbox -> cloud: gzip JSON batches to POST /api/v1/ingest, bounded by record count
and by how long the oldest record has waited; retries with back-off; rows are deleted
only after a 2xx. Telemetry rows already hold serialised records, which are spliced
into the body as they are (never parsed and re-serialised); the body is compressed
once per POST. A resend after a lost answer or a crash stores nothing twice: the cloud
keys telemetry by (node, seq) and every other record by its `rid` (see queue.py).

A 4xx other than auth/rate limits means the cloud refuses something in the batch (it
never stores part of one): the batch is bisected until the bad records are isolated;
they are dropped and counted as cloud_rejected, the rest is stored."""
import gzip
import json
import logging
import threading
import time

import httpx

from contract import protocol as p
from gateway.config import GatewayConfig
from gateway.metrics import Metrics
from gateway.queue import Outbox, Row

log = logging.getLogger("gateway.uplink")
RETRY_4XX = (401, 403, 404, 408, 409, 425, 429)   # the cloud is not ready for us, not "your data is bad"
LISTS = {"heartbeat": "heartbeats", "status": "statuses", "ota_state": "ota_states"}
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class Uplink:
    def __init__(self, cfg: GatewayConfig, outbox: Outbox, metrics: Metrics):
        self.cfg, self.outbox, self.metrics = cfg, outbox, metrics
        self.wake = threading.Event()
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if cfg.token:
            headers["Authorization"] = "Bearer " + cfg.token
        self.http = httpx.Client(base_url=cfg.cloud, headers=headers, timeout=httpx.Timeout(30.0, connect=3.0))
        self.last_ok = 0.0

    def run(self, stop: threading.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            rows = self.outbox.peek(self.cfg.batch_max)
            if not rows:
                self.wake.wait(self.cfg.batch_interval)
                self.wake.clear()
                continue
            age = time.time() - rows[0].at
            if sum(r.n for r in rows) < self.cfg.batch_max and age < self.cfg.batch_interval:
                stop.wait(self.cfg.batch_interval - age)
                continue
            if self.ship(rows):
                backoff = 0.2
            else:
                stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg.backoff_max)

    def ship(self, rows: list[Row]) -> bool:
        """Stores the rows in the cloud (isolating refused records); True when they are done with."""
        items = [(r.kind, r.body if r.kind == "telemetry" else self._record(r)) for r in rows]
        batch_id = f"{self.cfg.gateway_id}-{self.outbox.epoch}-{rows[0].id}-{rows[-1].id}"
        status = self.post(items, batch_id)
        if status and 400 <= status < 500 and status not in RETRY_4XX:
            status = 200 if self._isolate(self._split(items), batch_id, refused=status) else 0
        if not 200 <= status < 300:
            return False
        self.outbox.delete([r.id for r in rows])
        for kind in ("telemetry", *LISTS):
            n = sum(r.n for r in rows if r.kind == kind)
            if n:
                self.metrics.messages_out.labels(kind).inc(n)
        self.metrics.queue_depth.set(self.outbox.depth)
        self.metrics.queue_bytes.set(self.outbox.bytes)
        return True

    def _record(self, row: Row) -> dict:
        """A heartbeat/status/ota_state as decoded, plus the rid the cloud stores it once by."""
        rec = json.loads(row.body)
        rec["rid"] = self.outbox.rid(row.id)
        return rec

    @staticmethod
    def _split(items: list) -> list:
        """Telemetry rows -> one item per record, so a single bad record can be isolated."""
        out = []
        for kind, body in items:
            if kind == "telemetry":
                out += [("telemetry", _dumps(rec).encode()) for rec in json.loads(b"[" + body + b"]")]
            else:
                out.append((kind, body))
        return out

    def _isolate(self, items: list, batch_id: str, lo: int = 0, refused: int = 0) -> bool:
        """Bisects a refused batch (`refused`: its status, when already posted); False when
        the cloud stopped answering (retry later)."""
        status = refused or self.post(items, f"{batch_id}-{lo}-{len(items)}")
        if 200 <= status < 300:
            return True
        if not status or status >= 500 or status in RETRY_4XX:
            return False
        if len(items) == 1:
            log.error("cloud rejected %s record %s (HTTP %d); dropped", items[0][0], str(items[0][1])[:200], status)
            self.metrics.drop("cloud_rejected")
            return True
        half = len(items) // 2
        return self._isolate(items[:half], batch_id, lo) and self._isolate(items[half:], batch_id, lo + half)

    def post(self, items: list, batch_id: str) -> int:
        """One POST of (kind, record) items; returns the HTTP status (0: cloud unreachable)."""
        lists: dict[str, list] = {k: [] for k in LISTS.values()}
        telemetry = []
        for kind, rec in items:
            if kind == "telemetry":
                telemetry.append(rec)
            else:
                lists[LISTS[kind]].append(rec)
        doc = p.ingest_batch(self.cfg.gateway_id, self.cfg.site, batch_id, telemetry=[], **lists)
        # "telemetry" is the first list key, after ids that cannot contain quotes
        text = _dumps(doc).encode().replace(b'"telemetry":[]', b'"telemetry":[' + b",".join(telemetry) + b"]", 1)
        body = gzip.compress(text, compresslevel=1)
        t0 = time.monotonic()
        try:
            r = self.http.post(p.INGEST_PATH, content=body)
        except httpx.HTTPError as e:
            self.metrics.cloud_errors.labels("unreachable").inc()
            self._health(False, f"cloud unreachable: {type(e).__name__}")
            return 0
        dt = time.monotonic() - t0
        self.metrics.cloud_latency.observe(dt)
        log.debug("POST %s: %d items, %d bytes gzip, HTTP %d in %.0f ms", batch_id, len(items), len(body), r.status_code, dt * 1000)
        if 200 <= r.status_code < 300:
            self.last_ok = time.time()
            self._health(True, "")
        else:
            self.metrics.cloud_errors.labels(str(r.status_code)).inc()
            self._health(False, f"cloud answered HTTP {r.status_code}: {r.text[:200]}")
        return r.status_code

    def _health(self, ok: bool, why: str) -> None:
        self.metrics.health["cloud_ok"] = ok
        self.metrics.health["cloud_error"] = why
        self.metrics.health["queue_depth"] = self.outbox.depth

    def drain(self, seconds: float) -> None:
        """On shutdown: one last bounded attempt to empty the outbox (what is left stays on disk)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rows = self.outbox.peek(self.cfg.batch_max)
            if not rows or not self.ship(rows):
                return
