"""A real HTTP server implementing the contract's three gateway-facing cloud calls
(POST /api/v1/ingest, GET /api/v1/gateways/{id}/events as SSE, GET /api/v1/blobs/{sha256}),
storing into SQLite with (node, seq) uniqueness for telemetry and (gateway, rid)
uniqueness for the other records (the gateway's stable record id; see gateway/queue.py). It runs as its own uvicorn process so
tests can kill it (cloud outage) and restart it on the same port and database.
Tests read results and add deployment events / blobs through the same SQLite file.

Run: python contract_cloud.py --port P --db PATH [--token T]"""
import argparse
import asyncio
import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (node TEXT, seq INTEGER, body TEXT, stored_at REAL, PRIMARY KEY (node, seq));
CREATE TABLE IF NOT EXISTS records (kind TEXT, body TEXT, stored_at REAL, gateway TEXT, rid TEXT, UNIQUE (gateway, rid));
CREATE TABLE IF NOT EXISTS batches (batch_id TEXT, gateway TEXT, n INTEGER, accepted INTEGER, duplicates INTEGER, at REAL,
                                    record_duplicates INTEGER);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, gateway TEXT, type TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, data BLOB);
CREATE TABLE IF NOT EXISTS blob_downloads (sha256 TEXT, at REAL);
"""


def connect(db: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def make_app(db: str, token: str):
    from fastapi import FastAPI, Header, HTTPException, Request, Response
    from fastapi.responses import JSONResponse, StreamingResponse

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from contract import protocol as p

    app = FastAPI()
    conn = connect(db)
    lock = threading.Lock()

    def auth(authorization: str | None) -> None:
        if token and authorization != "Bearer " + token:
            raise HTTPException(401, "bad token")

    @app.post(p.INGEST_PATH)
    async def ingest(request: Request, authorization: str | None = Header(None)):
        auth(authorization)
        raw = await request.body()
        try:
            if request.headers.get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            doc = json.loads(raw)
            if doc.get("v") != p.SCHEMA:
                raise p.ContractError("bad_version", "batch version")
            recs = doc["telemetry"]
            if len(recs) + len(doc["heartbeats"]) + len(doc["statuses"]) + len(doc["ota_states"]) > p.MAX_BATCH_RECORDS:
                raise p.ContractError("oversize", "too many records")
            for rec in recs:
                item = {k: v for k, v in rec.items() if k != "node"}
                p.validate(p.TELEMETRY, p.telemetry(rec["node"], [item]))
            for kind, key in ((p.HEARTBEAT, "heartbeats"), (p.STATUS, "statuses"), (p.OTA_STATE, "ota_states")):
                for msg in doc[key]:
                    p.validate(kind, msg)
        except (ValueError, KeyError, TypeError, OSError) as e:
            return JSONResponse({"detail": str(e)}, status_code=400)
        now = time.time()
        with lock:
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            accepted = 0
            for rec in recs:
                cur.execute("INSERT OR IGNORE INTO telemetry VALUES (?, ?, ?, ?)",
                            (rec["node"], rec["seq"], json.dumps(rec), now))
                accepted += cur.rowcount
            rec_dups = 0
            for kind, key in (("heartbeat", "heartbeats"), ("status", "statuses"), ("ota_state", "ota_states")):
                for m in doc[key]:
                    rid = m.pop("rid", None)         # stored once per (gateway, rid); bodies as the node sent them
                    cur.execute("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?)",
                                (kind, json.dumps(m), now, doc["gateway"], rid))
                    rec_dups += 1 - cur.rowcount
            cur.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (doc["batch_id"], doc["gateway"], len(recs), accepted, len(recs) - accepted, now, rec_dups))
            cur.execute("COMMIT")
        return {"accepted": accepted, "duplicates": len(recs) - accepted}

    @app.get(p.EVENTS_PATH)
    async def events(gateway: str, authorization: str | None = Header(None),
                     last_event_id: str | None = Header(None)):
        auth(authorization)
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

        async def stream():
            last, idle = start, 0.0
            while True:
                with lock:
                    rows = conn.execute("SELECT id, type, data FROM events WHERE id > ? AND gateway IN (?, '*') ORDER BY id",
                                        (last, gateway)).fetchall()
                for eid, etype, data in rows:
                    last = eid
                    yield f"id: {eid}\nevent: {etype}\ndata: {data}\n\n"
                    idle = 0.0
                if idle >= 5.0:
                    yield ": keepalive\n\n"
                    idle = 0.0
                await asyncio.sleep(0.1)
                idle += 0.1

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get(p.BLOB_PATH)
    async def blob(sha256: str, authorization: str | None = Header(None)):
        auth(authorization)
        with lock:
            row = conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
            if row:
                conn.execute("INSERT INTO blob_downloads VALUES (?, ?)", (sha256, time.time()))
        if not row:
            raise HTTPException(404, "no such blob")
        return Response(row[0], media_type="application/octet-stream")

    return app


class ContractCloud:
    """The server as a child process: start, kill (outage), start again on the same port and DB."""

    def __init__(self, workdir: Path, token: str = "gw-token", port: int | None = None):
        from tinyfleet.broker import free_port
        workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = str(workdir / "cloud.sqlite")
        self.token = token
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "cloud.log"
        self.db = connect(self.db_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ContractCloud":
        from tinyfleet.broker import wait_port
        self.proc = subprocess.Popen([sys.executable, __file__, "--port", str(self.port), "--db", self.db_path,
                                      "--token", self.token], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_port(self.port, 20)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    stop = kill

    # -- what tests look at and feed in
    def stored(self) -> dict[tuple[str, int], int]:
        return dict(((n, s), 1) for n, s in self.db.execute("SELECT node, seq FROM telemetry"))

    def count(self, sql: str, *args) -> int:
        return self.db.execute(sql, args).fetchone()[0]

    def records(self, kind: str) -> list[dict]:
        return [json.loads(b) for (b,) in self.db.execute("SELECT body FROM records WHERE kind = ?", (kind,))]

    def add_blob(self, data: bytes) -> str:
        import hashlib
        sha = hashlib.sha256(data).hexdigest()
        self.db.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (sha, data))
        return sha

    def add_event(self, etype: str, data: dict, gateway: str = "*") -> int:
        cur = self.db.execute("INSERT INTO events(gateway, type, data) VALUES (?, ?, ?)", (gateway, etype, json.dumps(data)))
        return cur.lastrowid

    def blob_downloads(self) -> int:
        return self.count("SELECT COUNT(*) FROM blob_downloads")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--token", default="")
    a = ap.parse_args()
    import uvicorn
    uvicorn.run(make_app(a.db, a.token), host="127.0.0.1", port=a.port, log_level="warning",
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
