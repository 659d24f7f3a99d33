"""TinyFleet wire contract, version 1: MQTT topics, JSON messages, OTA manifest,
binary OTA chunks, and OTA states. Every tier imports this one module; it also
runs on the ESP32 under MicroPython, so it sticks to json, struct, hashlib and
binascii, plain functions and dicts (no typing, no dataclasses, no f-strings).
docs/protocol.md explains each message; this file is the authority."""
import binascii
import hashlib
import json
import struct

try:
    from orjson import loads as _loads  # CPython: five times json's speed, and refuses NaN and lone surrogates
except ImportError:                     # MicroPython
    from json import loads as _loads  # type: ignore[assignment]

SCHEMA = 1
ROOT = "tinyfleet"
RUNTIME_VERSION = 1          # int8 runtime ABI a node reports; manifests name a minimum
MAX_JSON_BYTES = 16384       # any JSON message larger than this is refused unread
MAX_ITEMS = 64               # telemetry items in one message
MAX_FEATURES = 512           # raw features attached to one telemetry item
MAX_ID_LEN = 32

# Message kinds (the last topic level, or the two last for OTA).
TELEMETRY = "telemetry"
STATUS = "status"
HEARTBEAT = "heartbeat"
OTA_OFFER = "ota/offer"
OTA_REQUEST = "ota/request"
OTA_CHUNK = "ota/chunk"
OTA_STATE = "ota/state"
NODE_TO_CLOUD = (TELEMETRY, STATUS, HEARTBEAT, OTA_REQUEST, OTA_STATE)
CLOUD_TO_NODE = (OTA_OFFER, OTA_CHUNK)
KINDS = NODE_TO_CLOUD + CLOUD_TO_NODE

# OTA execution states (ThingsBoard / AWS IoT Jobs, plus ROLLED_BACK).
QUEUED = "QUEUED"
DOWNLOADING = "DOWNLOADING"
DOWNLOADED = "DOWNLOADED"
VERIFIED = "VERIFIED"
UPDATING = "UPDATING"
UPDATED = "UPDATED"
FAILED = "FAILED"
ROLLED_BACK = "ROLLED_BACK"
OTA_STATES = (QUEUED, DOWNLOADING, DOWNLOADED, VERIFIED, UPDATING, UPDATED, FAILED, ROLLED_BACK)
FINAL_STATES = (UPDATED, FAILED, ROLLED_BACK)

# Reasons a FAILED (or ROLLED_BACK) report may carry.
FAIL_REASONS = (
    "bad_hmac", "downgrade", "wrong_model", "too_large", "runtime_too_old", "bad_sha256",
    "bad_manifest", "self_test", "inference_errors", "storage", "timeout", "aborted",
)


class ContractError(ValueError):
    """A message or topic that breaks the contract. `reason` is a short code that
    gateways and the cloud count drops by: bad_topic, bad_json, oversize,
    bad_version, missing_field, wrong_type, bad_value, bad_crc, bad_hmac."""

    def __init__(self, reason, detail):
        super().__init__(reason + ": " + detail)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------- topics

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"


def _check_id(value, what):
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LEN:
        raise ContractError("bad_topic", "%s must be 1..%d characters" % (what, MAX_ID_LEN))
    if value.strip(_ID_CHARS):   # what is left has a character outside the set
        raise ContractError("bad_topic", "%s %r has a character outside [A-Za-z0-9._-]" % (what, value))
    return value


def topic(site, node, kind):
    """tinyfleet/<site>/<node>/<kind>"""
    if kind not in KINDS:
        raise ContractError("bad_topic", "unknown message kind %r" % (kind,))
    return "%s/%s/%s/%s" % (ROOT, _check_id(site, "site"), _check_id(node, "node id"), kind)


def site_filter(site, kind="#"):
    """Subscription filter for one kind (or all, '#') of every node of a site."""
    _check_id(site, "site")
    if kind == "#":
        return "%s/%s/#" % (ROOT, site)
    return "%s/%s/+/%s" % (ROOT, site, kind)


def parse_topic(name):
    """Returns (site, node, kind) or raises ContractError('bad_topic')."""
    if isinstance(name, bytes):
        name = name.decode()
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != ROOT:
        raise ContractError("bad_topic", "not a tinyfleet node topic: %r" % (name,))
    kind = "/".join(parts[3:])
    if kind not in KINDS:
        raise ContractError("bad_topic", "unknown message kind %r in %r" % (kind, name))
    return _check_id(parts[1], "site"), _check_id(parts[2], "node id"), kind


# ---------------------------------------------------------------- JSON schemas
# field -> (type, required). Types: "int", "num" (int or float), "str", "bool",
# "list", "dict", "scalar" (num or str).

_TELEMETRY_ITEM = {
    "seq": ("int", True), "ts": ("int", True), "model": ("str", True),
    "model_version": ("int", True), "result": ("scalar", True), "score": ("num", True),
    "features": ("list", False),
}
SCHEMAS = {
    TELEMETRY: {"v": ("int", True), "node": ("str", True), "items": ("list", True)},
    STATUS: {"v": ("int", True), "node": ("str", True), "state": ("str", True), "ts": ("int", False)},
    HEARTBEAT: {
        "v": ("int", True), "node": ("str", True), "ts": ("int", True), "fw": ("str", True),
        "runtime": ("int", True), "board": ("str", True), "models": ("dict", True),
        "free_mem": ("int", True), "uptime": ("int", True),
    },
    OTA_OFFER: {
        "v": ("int", True), "deployment": ("str", True), "model": ("str", True),
        "version": ("int", True), "size": ("int", True), "chunk_size": ("int", True),
        "sha256": ("str", True), "min_runtime": ("int", True), "rollback": ("bool", True),
        "golden": ("list", True), "key": ("str", True), "hmac": ("str", True),
    },
    OTA_REQUEST: {
        "v": ("int", True), "node": ("str", True), "deployment": ("str", True),
        "index": ("int", True), "count": ("int", True),
    },
    OTA_STATE: {
        "v": ("int", True), "node": ("str", True), "deployment": ("str", True),
        "model": ("str", True), "version": ("int", True), "state": ("str", True),
        "reason": ("str", False), "progress": ("num", False), "ts": ("int", False),
    },
}
STATUS_STATES = ("online", "offline")


_NUM = (int, float)
_SCALAR = (int, float, str)
_PY_TYPES = {"int": int, "num": _NUM, "str": str, "list": list, "dict": dict, "scalar": _SCALAR,
             "bool": bool}  # type: dict


def _type_ok(value, kind):
    if value is True or value is False:
        return kind == "bool"  # bool is an int subclass; never accept it as a number
    return kind != "bool" and isinstance(value, _PY_TYPES[kind])


def _check_fields(obj, schema, where):
    if not isinstance(obj, dict):
        raise ContractError("wrong_type", where + " must be a JSON object")
    for name, (kind, required) in schema.items():
        if name not in obj:
            if required:
                raise ContractError("missing_field", "%s lacks %r" % (where, name))
        elif not _type_ok(obj[name], kind):
            # "64-bit": CPython's decoder (orjson) reads a larger integer as a float
            what = "int (64-bit)" if kind == "int" else kind
            raise ContractError("wrong_type", "%s field %r must be %s" % (where, name, what))


def _check_range(ok, reason, detail):
    if not ok:
        raise ContractError(reason, detail)


def _plain_item(item):
    """True for an everyday telemetry item (exact JSON types, all in range): it skips the
    field-by-field walk, which is what names the problem in any other item. Never true
    for an item _check_item would refuse."""
    if type(item) is not dict:
        return False
    seq, feats = item.get("seq"), item.get("features", ())
    return (type(seq) is int and seq >= 0 and type(item.get("ts")) is int and type(item.get("model")) is str
            and type(item.get("model_version")) is int and type(item.get("result")) in _SCALAR
            and type(item.get("score")) in _NUM and (feats == () or type(feats) is list and len(feats) <= MAX_FEATURES
                                                   and all(type(f) in _NUM for f in feats)))


def _check_item(item, i):
    _check_fields(item, _TELEMETRY_ITEM, "telemetry item %d" % i)
    if item["seq"] < 0:
        raise ContractError("bad_value", "seq must be >= 0")
    feats = item.get("features")
    if feats is not None:
        if len(feats) > MAX_FEATURES:
            raise ContractError("oversize", "more than %d features" % MAX_FEATURES)
        for f in feats:
            if not _type_ok(f, "num"):
                raise ContractError("wrong_type", "features must be numbers")


def validate(kind, msg):
    """Checks a decoded message against the schema of `kind` and the value rules."""
    if kind not in SCHEMAS:
        raise ContractError("bad_topic", "no JSON schema for kind %r" % (kind,))
    _check_fields(msg, SCHEMAS[kind], kind)
    if msg["v"] != SCHEMA:
        raise ContractError("bad_version", "schema version %r, expected %d" % (msg["v"], SCHEMA))
    if "node" in msg:
        try:
            _check_id(msg["node"], "node id")
        except ContractError as e:
            raise ContractError("bad_value", e.detail)
    if kind == TELEMETRY:
        items = msg["items"]
        if not 0 < len(items) <= MAX_ITEMS:
            raise ContractError("bad_value", "telemetry needs 1..%d items" % MAX_ITEMS)
        for i in range(len(items)):
            if not _plain_item(items[i]):
                _check_item(items[i], i)
    elif kind == STATUS:
        _check_range(msg["state"] in STATUS_STATES, "bad_value", "status state must be online or offline")
    elif kind == OTA_STATE:
        if msg["state"] not in OTA_STATES:
            raise ContractError("bad_value", "unknown OTA state %r" % (msg["state"],))
    elif kind == OTA_REQUEST:
        _check_range(msg["index"] >= 0 and 0 < msg["count"] <= 64, "bad_value", "chunk window out of range")
    elif kind == OTA_OFFER:
        _check_range(msg["size"] > 0 and msg["chunk_size"] > 0, "bad_value", "size and chunk_size must be > 0")
        _check_range(len(msg["sha256"]) == 64, "bad_value", "sha256 must be 64 hex digits")
        for g in msg["golden"]:
            _check_range(isinstance(g, list) and len(g) == 2 and _type_ok(g[0], "str") and _type_ok(g[1], "str"),
                         "wrong_type", "golden vectors are [input_b64, output_b64] pairs")
    return msg


def encode(kind, msg):
    """Validates and serialises a message; the encoder refuses what the decoder would."""
    validate(kind, msg)
    data = json.dumps(msg).encode()
    if len(data) > MAX_JSON_BYTES:
        raise ContractError("oversize", "%s message is %d bytes, limit %d" % (kind, len(data), MAX_JSON_BYTES))
    return data


def decode(kind, payload):
    """Strict decoder: bytes -> validated dict, or ContractError (never another exception)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ContractError("wrong_type", "payload must be bytes")
    if len(payload) > MAX_JSON_BYTES:
        raise ContractError("oversize", "payload is %d bytes, limit %d" % (len(payload), MAX_JSON_BYTES))
    try:
        msg = _loads(bytes(payload))
    except Exception:  # ValueError on both interpreters; UnicodeError on CPython
        raise ContractError("bad_json", "payload is not valid UTF-8 JSON")
    return validate(kind, msg)


# ---------------------------------------------------------------- builders

def telemetry(node, items):
    """items: dicts with seq, ts, model, model_version, result, score[, features]."""
    return {"v": SCHEMA, "node": node, "items": items}


def status(node, state, ts=None):
    msg = {"v": SCHEMA, "node": node, "state": state}
    if ts is not None:
        msg["ts"] = ts
    return msg


def last_will(node):
    """The retained `offline` status a node registers as its MQTT will."""
    return encode(STATUS, status(node, "offline"))


def ota_state(node, deployment, model, version, state, reason=None, progress=None, ts=None):
    msg = {"v": SCHEMA, "node": node, "deployment": deployment, "model": model,
           "version": version, "state": state}
    if reason is not None:
        msg["reason"] = reason
    if progress is not None:
        msg["progress"] = progress
    if ts is not None:
        msg["ts"] = ts
    return msg


def chunk_request(node, deployment, index, count):
    return {"v": SCHEMA, "node": node, "deployment": deployment, "index": index, "count": count}


# ---------------------------------------------------------------- OTA manifest

def hmac_sha256(key, msg):
    """RFC 2104 HMAC; MicroPython has hashlib.sha256 but no hmac module."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]) + msg).digest()
    return hashlib.sha256(bytes([b ^ 0x5C for b in key]) + inner).digest()


def _golden_digest(golden):
    h = hashlib.sha256()
    for pair in golden:
        h.update(pair[0].encode() + b"|" + pair[1].encode() + b";")
    return binascii.hexlify(h.digest()).decode()


def manifest_signing_bytes(m):
    """Canonical bytes the HMAC covers: every manifest field but `hmac`, in a fixed
    order, so signer and verifier never depend on a JSON library's key order."""
    fields = (
        "tinyfleet-ota", str(m["v"]), m["deployment"], m["model"], str(m["version"]),
        str(m["size"]), str(m["chunk_size"]), m["sha256"], str(m["min_runtime"]),
        "rollback" if m["rollback"] else "update", m["key"], _golden_digest(m["golden"]),
    )
    return "|".join(fields).encode()


def build_manifest(key_bytes, key_id, deployment, model, version, blob, chunk_size, golden,
                   min_runtime=RUNTIME_VERSION, rollback=False):
    """Signed offer for `blob`. golden: [(input_bytes, output_bytes), ...] from the reference runtime."""
    m = {
        "v": SCHEMA, "deployment": deployment, "model": model, "version": version,
        "size": len(blob), "chunk_size": chunk_size,
        "sha256": binascii.hexlify(hashlib.sha256(blob).digest()).decode(),
        "min_runtime": min_runtime, "rollback": rollback, "key": key_id,
        "golden": [[binascii.b2a_base64(i).decode().strip(), binascii.b2a_base64(o).decode().strip()]
                   for i, o in golden],
        "hmac": "",
    }
    m["hmac"] = binascii.hexlify(hmac_sha256(key_bytes, manifest_signing_bytes(m))).decode()
    validate(OTA_OFFER, m)
    return m


def verify_manifest(m, key_bytes):
    """Raises ContractError('bad_hmac') unless the manifest's HMAC matches (constant time)."""
    validate(OTA_OFFER, m)
    want = hmac_sha256(key_bytes, manifest_signing_bytes(m))
    try:
        got = binascii.unhexlify(m["hmac"])
    except Exception:
        raise ContractError("bad_hmac", "hmac is not hex")
    diff = len(got) ^ len(want)
    for i in range(min(len(got), len(want))):
        diff |= got[i] ^ want[i]
    if diff:
        raise ContractError("bad_hmac", "manifest HMAC does not verify")
    return m


def golden_vectors(m):
    """[(input_bytes, output_bytes)] from a manifest."""
    return [(binascii.a2b_base64(i.encode()), binascii.a2b_base64(o.encode())) for i, o in m["golden"]]


def chunk_count(size, chunk_size):
    return (size + chunk_size - 1) // chunk_size


# ---------------------------------------------------------------- OTA chunks (binary)
# magic "TC", format 1, 0, blob id (first 8 bytes of the sha256), u32 index,
# u32 crc32 of the data, u16 data length, then the data. Binary, because base64
# JSON would cost a third more bytes per node.
CHUNK_MAGIC = b"TC"
CHUNK_HEADER = "<2sBB8sIIH"
CHUNK_HEADER_SIZE = struct.calcsize(CHUNK_HEADER)  # 22
MAX_CHUNK_DATA = 4096


def blob_id(sha256_hex):
    return binascii.unhexlify(sha256_hex)[:8]


def encode_chunk(sha256_hex, index, data):
    if len(data) > MAX_CHUNK_DATA:
        raise ContractError("oversize", "chunk data is %d bytes, limit %d" % (len(data), MAX_CHUNK_DATA))
    crc = binascii.crc32(data) & 0xFFFFFFFF
    return struct.pack(CHUNK_HEADER, CHUNK_MAGIC, SCHEMA, 0, blob_id(sha256_hex), index, crc, len(data)) + data


def decode_chunk(payload):
    """bytes -> (blob_id, index, data); ContractError on a bad header, length or crc32."""
    if len(payload) < CHUNK_HEADER_SIZE:
        raise ContractError("bad_value", "chunk shorter than its header")
    if len(payload) > CHUNK_HEADER_SIZE + MAX_CHUNK_DATA:
        raise ContractError("oversize", "chunk is %d bytes" % len(payload))
    magic, version, _, bid, index, crc, length = struct.unpack_from(CHUNK_HEADER, payload, 0)
    if magic != CHUNK_MAGIC:
        raise ContractError("bad_value", "not an OTA chunk (bad magic)")
    if version != SCHEMA:
        raise ContractError("bad_version", "chunk format %d, expected %d" % (version, SCHEMA))
    data = bytes(payload[CHUNK_HEADER_SIZE:])
    if len(data) != length:
        raise ContractError("bad_value", "chunk %d is truncated: %d of %d bytes" % (index, len(data), length))
    if binascii.crc32(data) & 0xFFFFFFFF != crc:
        raise ContractError("bad_crc", "chunk %d fails its crc32" % index)
    return bytes(bid), index, data


# ---------------------------------------------------------------- gateway <-> cloud (HTTP, CPython only)
INGEST_PATH = "/api/v1/ingest"                      # POST, JSON (gzip allowed), bearer token
EVENTS_PATH = "/api/v1/gateways/{gateway}/events"   # GET, server-sent events, Last-Event-ID resumes
BLOB_PATH = "/api/v1/blobs/{sha256}"                # GET, application/octet-stream
MAX_BATCH_RECORDS = 5000


def ingest_batch(gateway, site, batch_id, telemetry=(), heartbeats=(), statuses=(), ota_states=()):
    """What a gateway POSTs to INGEST_PATH. `telemetry` holds flat records: a telemetry
    item plus its "node"; the others are the node messages as decoded. The cloud stores
    telemetry once per (node, seq) and answers {"accepted": n, "duplicates": m}."""
    return {"v": SCHEMA, "gateway": gateway, "site": site, "batch_id": batch_id,
            "telemetry": list(telemetry), "heartbeats": list(heartbeats),
            "statuses": list(statuses), "ota_states": list(ota_states)}


def flatten_telemetry(msg):
    """A decoded TELEMETRY message -> flat records (item fields + node)."""
    out = []
    for item in msg["items"]:
        rec = dict(item)
        rec["node"] = msg["node"]
        out.append(rec)
    return out


# ---------------------------------------------------------------- serial frames (Nano 33 BLE Sense <-> gateway)
# One frame per text line: "TF1 <kind> <base64 payload> <crc32 hex>\n". The crc32 covers
# "<kind> " + payload bytes. Kinds are the MQTT kinds above; the node id travels inside
# the JSON payloads (binary ota/chunk frames are addressed by the line they arrive on).
SERIAL_PREFIX = b"TF1 "
MAX_SERIAL_LINE = 8192


def encode_serial_frame(kind, payload):
    if kind not in KINDS:
        raise ContractError("bad_topic", "unknown message kind %r" % (kind,))
    crc = binascii.crc32(kind.encode() + b" " + payload) & 0xFFFFFFFF
    line = SERIAL_PREFIX + kind.encode() + b" " + binascii.b2a_base64(payload).strip() + b" " + (b"%08x" % crc) + b"\n"
    if len(line) > MAX_SERIAL_LINE:
        raise ContractError("oversize", "serial frame is %d bytes, limit %d" % (len(line), MAX_SERIAL_LINE))
    return line


# A board without a clock (the Nano 33) sends its uptime in ms as `ts`; no uptime reaches
# 10^12 ms (31 years), no epoch time since 2001 is below it. The gateway that relays the
# frame turns uptimes into epoch ms on receipt (`stamp_uptime`).
UPTIME_TS_LIMIT = 10 ** 12


def stamp_uptime(kind, msg, now_ms):
    """A decoded message whose `ts` are uptimes -> the same with epoch ms, taking the newest
    item as sent at now_ms (items keep their spacing); None when it already has epoch times."""
    if kind == TELEMETRY:
        top = max(it["ts"] for it in msg["items"])
        if top >= UPTIME_TS_LIMIT:
            return None
        for it in msg["items"]:
            it["ts"] = now_ms - (top - it["ts"])
        return msg
    if "ts" in msg and msg["ts"] < UPTIME_TS_LIMIT:
        msg["ts"] = now_ms
        return msg
    return None


def decode_serial_frame(line):
    """bytes line -> (kind, payload); ContractError on truncation, bad base64 or crc."""
    if len(line) > MAX_SERIAL_LINE:
        raise ContractError("oversize", "serial line is %d bytes" % len(line))
    line = bytes(line).rstrip(b"\r\n")
    if not line.startswith(SERIAL_PREFIX):
        raise ContractError("bad_value", "not a TF1 frame")
    parts = line[len(SERIAL_PREFIX):].split(b" ")
    if len(parts) != 3 or len(parts[2]) != 8:
        raise ContractError("bad_value", "truncated or malformed serial frame")
    kind = parts[0].decode()
    if kind not in KINDS:
        raise ContractError("bad_topic", "unknown message kind %r" % (kind,))
    try:
        payload = binascii.a2b_base64(parts[1])
        crc = int(parts[2].decode(), 16)
    except Exception:
        raise ContractError("bad_value", "serial frame payload or crc is not decodable")
    if binascii.crc32(parts[0] + b" " + payload) & 0xFFFFFFFF != crc:
        raise ContractError("bad_crc", "serial frame fails its crc32")
    return kind, payload
