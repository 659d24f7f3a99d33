# Runs inside the real MicroPython (WebAssembly build): the contract must work on the device.
import hashlib
import binascii
from contract import protocol as p

m = p.build_manifest(b"k" * 32, "fleet", "d-1", "sine", 2, b"\x01" * 300, 64, [(b"\x00\x01", b"\x7f")])
p.verify_manifest(m, b"k" * 32)
assert p.golden_vectors(m) == [(b"\x00\x01", b"\x7f")]
bad = dict(m)
bad["version"] = 3
try:
    p.verify_manifest(bad, b"k" * 32)
    raise SystemExit(3)
except p.ContractError as e:
    assert e.reason == "bad_hmac", e.reason

for payload, reason in [(b"{nope", "bad_json"), (b'{"v":2,"node":"n","items":[]}', "bad_version"),
                        (b'{"v":1,"node":"n"}', "missing_field"), (b'{"v":1,"node":5,"items":[]}', "wrong_type")]:
    try:
        p.decode(p.TELEMETRY, payload)
        raise SystemExit(4)
    except p.ContractError as e:
        assert e.reason == reason, (reason, e.reason)

for node in ("no de", "n/1", "n\u00e9", ""):
    try:
        p._check_id(node, "node id")
        raise SystemExit(6)
    except p.ContractError as e:
        assert e.reason == "bad_topic"
item = {"seq": 1, "ts": 2, "model": "sine", "model_version": 1, "result": 0.5, "score": 0.5, "features": [1, 2.5]}
assert p._plain_item(item) and not p._plain_item(dict(item, features=[True])) and not p._plain_item(dict(item, seq=-1))
for bad, reason in ((dict(item, features=None), "wrong_type"), (dict(item, seq=-1), "bad_value")):
    try:
        p.validate(p.TELEMETRY, p.telemetry("n-1", [bad]))
        raise SystemExit(7)
    except p.ContractError as e:
        assert e.reason == reason, (reason, e.reason)
msg = p.telemetry("n-1", [{"seq": 1, "ts": 2, "model": "sine", "model_version": 1, "result": 0.5, "score": 0.5}])
assert p.decode(p.TELEMETRY, p.encode(p.TELEMETRY, msg)) == msg
sha = binascii.hexlify(hashlib.sha256(b"blob").digest()).decode()
frame = p.encode_chunk(sha, 5, b"data")
assert p.decode_chunk(frame)[1:] == (5, b"data")
try:
    p.decode_chunk(frame[:-1] + b"X")
    raise SystemExit(5)
except p.ContractError as e:
    assert e.reason == "bad_crc"
line = p.encode_serial_frame(p.TELEMETRY, b"{}")
assert p.decode_serial_frame(line) == (p.TELEMETRY, b"{}")
assert p.hmac_sha256(b"key", b"The quick brown fox jumps over the lazy dog") == binascii.unhexlify(
    "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
print("contract ok")
