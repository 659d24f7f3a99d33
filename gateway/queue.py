"""Durable store-and-forward outbox (SQLite, WAL). Everything the cloud has not
acknowledged lives here, so a cloud outage or a gateway crash loses nothing.
Messages are acked to the broker only after they are committed here, and deleted
only after the cloud answered 2xx.

A row holds either one node message (heartbeat, status, ota_state: the payload as
received) or up to CHUNK flat telemetry records as one JSON array without its brackets:
a batch of 2,000 messages is a handful of inserts, not 2,000. A row's id never changes,
so "<epoch>-<id>" (`rid`) names a record across resends: the cloud stores telemetry
once per (node, seq) and the other kinds once per rid. The epoch is drawn when the
outbox file is created, so a wiped state dir cannot reuse an old rid.

Each commit also logs the broker deliveries it holds (see dedup.py), so that a message
the broker resends after a crash is recognised as already stored, and the last status
forwarded per node topic, so that the broker's retained copy of it is too.

When the outbox reaches `max_bytes` of payload, the OLDEST rows are dropped (counted
per record as queue_full): for sensing, fresh data is worth more than stale."""
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple

from gateway.dedup import ENTRY_SIZE, KEEP, Deliveries

CHUNK = 500    # telemetry records per row: small enough to split one bad record out cheaply

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,          -- telemetry | heartbeat | status | ota_state
    body BLOB NOT NULL,          -- n comma-separated flat telemetry records, or one node message
    size INTEGER NOT NULL,
    at REAL NOT NULL,
    n INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS deliveries (
    upto INTEGER PRIMARY KEY,    -- deliveries committed so far, after this batch
    session INTEGER NOT NULL,
    data BLOB NOT NULL           -- (packet id u16, crc32 u32) per QoS 1 message of the batch
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS statuses (
    topic BLOB PRIMARY KEY,      -- a node's status topic
    crc INTEGER NOT NULL         -- crc32 of topic + payload of the last status forwarded from it
);
"""


class Row(NamedTuple):
    id: int
    kind: str
    body: bytes
    at: float
    n: int


class Outbox:
    """Thread-safe: writes go through one connection behind one lock; the uplink reads
    through a second connection, so a peek never waits for a commit's fsync."""

    def __init__(self, path: Path, max_bytes: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        if "n" not in {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}:   # outbox of an older gateway
            self._db.execute("ALTER TABLE outbox ADD COLUMN n INTEGER NOT NULL DEFAULT 1")
        self._db.execute("DROP TABLE IF EXISTS seen")    # the older gateway's durable (node, seq) set
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?), ('session', '0')", (secrets.token_hex(4),))
        meta = dict(self._db.execute("SELECT name, value FROM meta"))
        self.epoch, self.session = meta["epoch"], int(meta["session"])
        self.statuses: dict[bytes, int] = dict(self._db.execute("SELECT topic, crc FROM statuses"))
        self.deliveries = Deliveries()
        for upto, session, data in self._db.execute("SELECT upto, session, data FROM deliveries ORDER BY upto"):
            self.deliveries.add(session, data, upto)
        row = self._db.execute("SELECT COALESCE(SUM(n), 0), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self.depth, self.bytes = row[0], row[1]
        self._ro = sqlite3.connect(str(path), check_same_thread=False)

    def rid(self, row_id: int) -> str:
        return f"{self.epoch}-{row_id}"

    def new_session(self) -> int:
        """The broker started a new session for us: deliveries of the old one can never come back."""
        with self._lock:
            self.session += 1
            self._db.execute("UPDATE meta SET value = ? WHERE name = 'session'", (str(self.session),))
        return self.session

    def put(self, rows: list[tuple[str, int, bytes]], session: int = 0, delivered: bytes = b"",
            statuses: dict[bytes, int] | None = None) -> tuple[int, int]:
        """rows: (kind, records, body); delivered: Deliveries.pack() of the batch's QoS 1
        messages; statuses: {topic: crc} of the statuses among the rows (a retained copy
        the broker sends again on a re-subscribe is recognised by it). One transaction:
        all of it is on disk or none of it.
        Returns (records stored, records dropped because the outbox was full)."""
        now = time.time()
        incoming = sum(len(body) for _, _, body in rows)
        stored = sum(n for _, n, _ in rows)
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                dropped = 0
                if self.bytes + incoming > self.max_bytes:
                    dropped = self._drop_oldest(cur, self.bytes + incoming - self.max_bytes)
                cur.executemany("INSERT INTO outbox(kind, n, body, size, at) VALUES (?, ?, ?, ?, ?)",
                                [(kind, n, body, len(body), now) for kind, n, body in rows])
                upto = self.deliveries.count + len(delivered) // ENTRY_SIZE
                if delivered:
                    cur.execute("INSERT INTO deliveries VALUES (?, ?, ?)", (upto, session, delivered))
                    cur.execute("DELETE FROM deliveries WHERE upto <= ?", (upto - KEEP,))
                if statuses:
                    cur.executemany("INSERT OR REPLACE INTO statuses VALUES (?, ?)", list(statuses.items()))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self.depth += stored
            self.bytes += incoming
            if delivered:
                self.deliveries.add(session, delivered, upto)
            if statuses:
                self.statuses.update(statuses)
        return stored, dropped

    def _drop_oldest(self, cur: sqlite3.Cursor, need: int) -> int:
        freed = dropped = 0
        while freed < need:
            victims = cur.execute("SELECT id, size, n FROM outbox ORDER BY id LIMIT 1000").fetchall()
            if not victims:
                break
            take = []
            for rid, size, n in victims:
                take.append((rid,))
                freed += size
                dropped += n
                self.depth -= n
                self.bytes -= size
                if freed >= need:
                    break
            cur.executemany("DELETE FROM outbox WHERE id = ?", take)
        return dropped

    def peek(self, limit: int) -> list[Row]:
        """Oldest rows first, as many as hold at most `limit` records (always at least one row)."""
        out, total = [], 0
        cur = self._ro.execute("SELECT id, kind, body, at, n FROM outbox ORDER BY id LIMIT ?", (limit,))
        try:
            while total < limit:
                part = cur.fetchmany(16)
                if not part:
                    break
                for r in part:
                    if out and total + r[4] > limit:
                        return out
                    out.append(Row(*r))
                    total += r[4]
            return out
        finally:
            cur.close()

    def delete(self, ids: list[int]) -> None:
        """Called only after the cloud acknowledged these rows."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                marks = ",".join("?" * len(part))
                row = cur.execute(f"SELECT COALESCE(SUM(n), 0), COALESCE(SUM(size), 0) FROM outbox WHERE id IN ({marks})",
                                  part).fetchone()
                cur.execute(f"DELETE FROM outbox WHERE id IN ({marks})", part)
                self.depth -= row[0]
                self.bytes -= row[1]
            cur.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._ro.close()
            self._db.close()
