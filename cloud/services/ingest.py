"""Gateway batches -> one transaction. Every record is checked with the contract's own
validator first; any bad record refuses the whole batch (nothing stored). Telemetry is
inserted with ON CONFLICT DO NOTHING on (node, seq), so a replayed batch is counted as
duplicates, never stored twice."""
from __future__ import annotations

import math
import time
import zlib
from functools import lru_cache

import orjson

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from cloud.models import Node, Site, Telemetry
from cloud.services import deployments, events, fleet
from contract import protocol

MAX_TS = 253402300799999          # 9999-12-31, the largest ms a datetime holds
MAX_I63 = 2**63 - 1
MAX_I31 = 2**31 - 1
MAX_NAME = 64                     # model names, fw, board, reasons, result strings


class IngestError(ValueError):
    """Refused batch; `status` is the HTTP code (413 oversize, 415, 422)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def read_body(raw: bytes, encoding: str | None, max_inflated: int) -> dict:
    """Bytes (plain or gzip) -> dict, or IngestError."""
    enc = (encoding or "identity").strip().lower()
    if enc == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = d.decompress(raw, max_inflated + 1)
        except zlib.error as e:
            raise IngestError(422, f"body is not valid gzip: {e}")
        if len(raw) > max_inflated or d.unconsumed_tail:
            raise IngestError(413, f"inflated body exceeds {max_inflated} bytes")
        if not d.eof:
            raise IngestError(422, "gzip body is truncated")
    elif enc != "identity":
        raise IngestError(415, f"unsupported Content-Encoding {encoding!r} (gzip or none)")
    try:
        body = orjson.loads(raw)      # strict: no NaN/Infinity, no lone surrogates, UTF-8 only
    except orjson.JSONDecodeError as e:
        raise IngestError(422, f"bad_json: {e}")
    if not isinstance(body, dict):
        raise IngestError(422, "wrong_type: the batch must be a JSON object")
    if b"\\u0000" in raw:        # strict JSON has no raw control characters: a NUL needs this escape
        _walk_strings(body, "batch")
    return body


def _walk_strings(obj, where: str) -> None:
    """Refuse NUL characters (PostgreSQL text cannot hold them)."""
    if isinstance(obj, str):
        if "\x00" in obj:
            raise IngestError(422, f"bad_value: {where} contains a NUL character")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk_strings(k, where)
            _walk_strings(v, where)
    elif isinstance(obj, list):
        for v in obj:
            _walk_strings(v, where)


def _range(ok: bool, detail: str) -> None:
    if not ok:
        raise IngestError(422, "bad_value: " + detail)


def _short(value, what: str) -> None:
    if isinstance(value, str):
        _range(len(value) <= MAX_NAME, f"{what} longer than {MAX_NAME} characters")


_RECORD_FIELDS = frozenset(protocol._TELEMETRY_ITEM) | {"node"}


def _record_fits(rec: dict) -> bool:
    """The database's limits for one contract-valid telemetry record."""
    result = rec["result"]
    return (rec["seq"] <= MAX_I63 and 0 <= rec["ts"] <= MAX_TS and 0 <= rec["model_version"] <= MAX_I31
            and math.isfinite(rec["score"]) and len(rec["model"]) <= MAX_NAME
            and (not isinstance(result, str) or len(result) <= MAX_NAME) and _RECORD_FIELDS.issuperset(rec))


def validate_batch(body: dict, nul_checked: bool = False) -> dict:
    """The contract's checks for every record plus the limits the database needs.
    nul_checked: read_body already looked for NUL characters in the raw text."""
    try:
        protocol._check_fields(body, {"v": ("int", True), "gateway": ("str", True), "site": ("str", True),
                                      "batch_id": ("str", True), "telemetry": ("list", False),
                                      "heartbeats": ("list", False), "statuses": ("list", False),
                                      "ota_states": ("list", False)}, "batch")
        if body["v"] != protocol.SCHEMA:
            raise protocol.ContractError("bad_version", f"schema version {body['v']!r}, expected {protocol.SCHEMA}")
        protocol._check_id(body["gateway"], "gateway")
        protocol._check_id(body["site"], "site")
    except protocol.ContractError as e:
        raise IngestError(422, str(e))
    _range(0 < len(body["batch_id"]) <= 128, "batch_id must be 1..128 characters")
    lists = {k: body.get(k, []) for k in ("telemetry", "heartbeats", "statuses", "ota_states")}
    total = sum(len(v) for v in lists.values())
    if total > protocol.MAX_BATCH_RECORDS:
        raise IngestError(413, f"oversize: {total} records, limit {protocol.MAX_BATCH_RECORDS}")
    if not nul_checked:
        _walk_strings(body, "batch")
    try:
        by_node: dict[str, list] = {}
        for i, rec in enumerate(lists["telemetry"]):
            if not isinstance(rec, dict) or "node" not in rec:
                raise protocol.ContractError("missing_field", f"telemetry record {i} lacks 'node'")
            if not isinstance(rec["node"], str):
                raise protocol.ContractError("wrong_type", f"telemetry record {i}: node must be str")
            by_node.setdefault(rec["node"], []).append(rec)
        for node, recs in by_node.items():     # the contract's validator, one message per 64 records of a node
            for k in range(0, len(recs), protocol.MAX_ITEMS):
                try:
                    protocol.validate(protocol.TELEMETRY, {"v": protocol.SCHEMA, "node": node,
                                                           "items": recs[k:k + protocol.MAX_ITEMS]})
                except protocol.ContractError as e:
                    raise protocol.ContractError(e.reason, f"telemetry of node {node[:64]!r}, record {k}+: {e}")
        for i, rec in enumerate(lists["telemetry"]):
            if not _record_fits(rec):       # the cheap test first: the detail is only built for a bad record
                _range(rec["seq"] <= MAX_I63, f"telemetry record {i}: seq out of range")
                _range(0 <= rec["ts"] <= MAX_TS, f"telemetry record {i}: ts out of range")
                _range(0 <= rec["model_version"] <= MAX_I31, f"telemetry record {i}: model_version out of range")
                _range(math.isfinite(rec["score"]), f"telemetry record {i}: score must be finite")
                _range(len(rec["model"]) <= MAX_NAME, f"telemetry record {i}: model name too long")
                _short(rec["result"], f"telemetry record {i} result")
                unknown = set(rec) - _RECORD_FIELDS
                _range(not unknown, f"telemetry record {i}: unknown fields {sorted(unknown)}")
        for i, hb in enumerate(lists["heartbeats"]):
            protocol.validate(protocol.HEARTBEAT, hb)
            _range(0 <= hb["ts"] <= MAX_TS, f"heartbeat {i}: ts out of range")
            _range(0 <= hb["runtime"] <= MAX_I31, f"heartbeat {i}: runtime out of range")
            _range(0 <= hb["free_mem"] <= MAX_I63 and 0 <= hb["uptime"] <= MAX_I63, f"heartbeat {i}: out of range")
            _short(hb["fw"], f"heartbeat {i} fw")
            _short(hb["board"], f"heartbeat {i} board")
            for name, ver in hb["models"].items():
                _range(0 < len(name) <= MAX_NAME and isinstance(ver, int) and not isinstance(ver, bool)
                       and 0 <= ver <= MAX_I31, f"heartbeat {i}: models must map names to integer versions")
        for i, st in enumerate(lists["statuses"]):
            protocol.validate(protocol.STATUS, st)
            _range(0 <= st.get("ts", 0) <= MAX_TS, f"status {i}: ts out of range")
        for i, st in enumerate(lists["ota_states"]):
            protocol.validate(protocol.OTA_STATE, st)
            _range(len(st["deployment"]) <= MAX_NAME and len(st["model"]) <= MAX_NAME,
                   f"ota_state {i}: deployment or model too long")
            _range(0 <= st["version"] <= MAX_I31, f"ota_state {i}: version out of range")
            _short(st.get("reason"), f"ota_state {i} reason")
            _range(0 <= st.get("ts", 0) <= MAX_TS, f"ota_state {i}: ts out of range")
            p = st.get("progress")
            _range(p is None or math.isfinite(p), f"ota_state {i}: progress must be finite")
    except protocol.ContractError as e:
        raise IngestError(422, str(e))
    return lists


def _insert(s: Session, table):
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite >= 3.24)."""
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


_COLUMNS = ("time", "ts", "node", "seq", "site", "model", "model_version", "result", "score", "anomaly",
            "features", "batch_id")
ROWS_PER_INSERT = 1000                  # x 12 parameters: under SQLite's 32,766 and PostgreSQL's 65,535


def _json(value) -> str:
    """JSON text of a validated result (number or string) or features list (numbers):
    orjson, because json.dumps costs microseconds per call in setup alone."""
    return orjson.dumps(value).decode()


@lru_cache(maxsize=4096)
def _second(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_s))


def _time_text(ts: int) -> str:
    """`ts` as SQLAlchemy writes a DateTime to SQLite (PostgreSQL gets "+00" appended)."""
    return "%s.%03d000" % (_second(ts // 1000), ts % 1000)


def _insert_telemetry(s: Session, records: list[dict], site: str, batch_id: str) -> list[dict]:
    """Multi-row INSERT .. ON CONFLICT DO NOTHING through the driver, with the values
    already in their column's text form: SQLAlchemy's per-row bind processing (two JSON
    columns and a DateTime) cost more than the database's own work. Returns the records
    actually inserted. The driver's row count says whether every row of a chunk went in;
    only a chunk that met a stored (node, seq) is undone (savepoint) and inserted again
    with RETURNING to learn which: fetching a row back per record cost a fifth of the store."""
    conn = s.connection()
    pg = conn.dialect.name == "postgresql"
    mark, tz = ("%s", "+00") if pg else ("?", "")
    one = "(" + ",".join([mark] * len(_COLUMNS)) + ")"
    head = f"INSERT INTO {Telemetry.__tablename__} ({','.join(_COLUMNS)}) VALUES "
    new: list[dict] = []
    cur = conn.connection.cursor()
    try:
        for start in range(0, len(records), ROWS_PER_INSERT):
            chunk = records[start:start + ROWS_PER_INSERT]
            sql = head + ",".join([one] * len(chunk)) + " ON CONFLICT (node, seq) DO NOTHING"
            values = [v for r in chunk for v in (
                _time_text(r["ts"]) + tz, r["ts"], r["node"], r["seq"], site, r["model"], r["model_version"],
                _json(r["result"]), float(r["score"]), is_anomaly(r["model"], r["result"]),
                None if r.get("features") is None else _json(r["features"]), batch_id)]
            cur.execute("SAVEPOINT telemetry")
            cur.execute(sql, values)
            if cur.rowcount != len(chunk):
                cur.execute("ROLLBACK TO SAVEPOINT telemetry")
                cur.execute(sql + " RETURNING node, seq", values)
                got = set(cur.fetchall())
                chunk = [r for r in chunk if (r["node"], r["seq"]) in got]
            cur.execute("RELEASE SAVEPOINT telemetry")
            new += chunk
    finally:
        cur.close()
    return new


def is_anomaly(model: str, result) -> bool | None:
    if model != "anomaly":
        return None
    return result == 1 or result == "anomaly"


def _result(r: dict) -> dict:
    """A stored record as a node's last result and the dashboard's live feed show it."""
    return {"model": r["model"], "model_version": r["model_version"], "seq": r["seq"], "ts": r["ts"],
            "result": r["result"], "score": float(r["score"])}


def store(s: Session, body: dict, lists: dict, settings) -> tuple[int, int]:
    """Writes a validated batch; returns (accepted, duplicates).

    A node that only sent telemetry gets one Core UPDATE (last seen, last result) in an
    executemany: at a thousand nodes, loading each as an ORM object cost most of the batch.
    Only nodes the database does not know yet are inserted (an upsert of every node in
    every batch cost a fifth of the batch).
    Nodes that are new or sent a heartbeat, status or OTA state are loaded as objects."""
    now = events.now_ms()
    gateway, site = body["gateway"], body["site"]
    # upserts: concurrent batches from several gateways may name the same new site or node
    s.execute(_insert(s, Site).values(id=site, gateway=gateway, first_seen=now, last_seen=now)
              .on_conflict_do_update(index_elements=["id"], set_={"gateway": gateway, "last_seen": now}))
    stateful = {m["node"] for k in ("heartbeats", "statuses", "ota_states") for m in lists[k]}
    ids = sorted({r["node"] for r in lists["telemetry"]} | stateful)
    if not ids:
        return 0, 0
    cols = Node.__table__.c

    def load(wanted):
        q = select(cols.id, cols.first_seen, cols.last_result).where(cols.id.in_(wanted)).order_by(cols.id)
        if s.get_bind().dialect.name == "postgresql":
            q = q.with_for_update()
        return {nid: (first, last) for nid, first, last in s.execute(q)}

    current = load(ids)
    missing = [nid for nid in ids if nid not in current]
    if missing:  # a concurrent batch may create the same node first: then it is not new here
        s.execute(_insert(s, Node.__table__).on_conflict_do_nothing(index_elements=["id"]),
                  [{"id": nid, "site": site, "gateway": gateway, "models": {}, "tags": [], "first_seen": now,
                    "last_seen": now} for nid in missing])
        current.update(load(missing))
    changed = stateful | {nid for nid, (first, _) in current.items() if first == now}
    nodes: dict[str, Node] = {n.id: n for n in s.scalars(select(Node).where(Node.id.in_(sorted(changed))))}
    for n in nodes.values():
        n.site, n.gateway, n.last_seen = site, gateway, now
    for hb in lists["heartbeats"]:
        n = nodes[hb["node"]]
        n.fw, n.runtime, n.board = hb["fw"], hb["runtime"], hb["board"]
        n.models, n.free_mem, n.uptime = dict(hb["models"]), hb["free_mem"], hb["uptime"]
        if n.state is None:
            n.state = "online"
    for st in lists["statuses"]:
        nodes[st["node"]].state = st["state"]

    fresh: dict[tuple[str, int], dict] = {}        # (node, seq) -> record, first of any repeats
    for rec in lists["telemetry"]:
        fresh.setdefault((rec["node"], rec["seq"]), rec)
    new = _insert_telemetry(s, list(fresh.values()), site, body["batch_id"]) if fresh else []
    newest: dict[str, dict] = {}                   # each node's newest stored record of this batch
    for r in new:
        top = newest.get(r["node"])
        if top is None or r["ts"] >= top["ts"]:
            newest[r["node"]] = r
    last = {nid: cur[1] for nid, cur in current.items()}    # newest result per node, never older
    for nid, r in newest.items():
        if r["ts"] >= (last[nid] or {}).get("ts", -1):
            last[nid] = _result(r)
    for nid, n in nodes.items():
        n.last_result = last[nid]
    plain = [{"b_id": nid, "site": site, "gateway": gateway, "last_seen": now, "last_result": last[nid]}
             for nid in ids if nid not in nodes]
    if plain:
        s.connection().execute(Node.__table__.update().where(cols.id == bindparam("b_id")), plain)
    touched = {st["deployment"] for st in lists["ota_states"]
               if deployments.apply_state(s, st, nodes.get(st["node"]), settings)}
    s.flush()
    deployments.advance(s, settings, touched)
    # Live "node" events only where the dashboard cannot tell from the telemetry event itself
    # (which carries last results and proves last_seen): new nodes and node-state messages.
    for nid in sorted(changed):
        events.publish(s, events.STREAM, "node", fleet.node_brief(nodes[nid], now, settings.online_window_s))
    if new:
        shown = [{"node": r["node"], **_result(r)} for r in new[-500:]]
        events.publish(s, events.STREAM, "telemetry", {"site": site, "records": shown})
    return len(new), len(lists["telemetry"]) - len(new)
