"""The wire contract: every rejection the foundation issue names, plus round trips."""
import hashlib
import hmac
import json

import pytest

from contract import protocol as p


def good_telemetry():
    return p.telemetry("node-1", [{"seq": 7, "ts": 1700000000000, "model": "sine", "model_version": 1,
                                   "result": 0.5, "score": 0.5, "features": [1.0, 2.5]}])


def manifest(key=b"fleet-key", **kw):
    args = dict(deployment="d-1", model="sine", version=2, blob=b"\x01" * 1000, chunk_size=256,
                golden=[(b"\x00", b"\x7f")])
    args.update(kw)
    return p.build_manifest(key, "fleet", **args)


def test_round_trip_every_json_kind():
    msgs = {
        p.TELEMETRY: good_telemetry(),
        p.STATUS: p.status("node-1", "online", ts=5),
        p.HEARTBEAT: {"v": 1, "node": "node-1", "ts": 1, "fw": "0.1.0", "runtime": 1, "board": "esp32",
                      "models": {"sine": 1}, "free_mem": 12000, "uptime": 3},
        p.OTA_OFFER: manifest(),
        p.OTA_REQUEST: p.chunk_request("node-1", "d-1", 0, 4),
        p.OTA_STATE: p.ota_state("node-1", "d-1", "sine", 2, p.FAILED, reason="bad_hmac"),
    }
    for kind, msg in msgs.items():
        assert p.decode(kind, p.encode(kind, msg)) == msg


@pytest.mark.parametrize("payload,reason", [
    (b"{not json", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (b"[1, 2]", "wrong_type"),
    (json.dumps({**good_telemetry(), "v": 2}).encode(), "bad_version"),
    (json.dumps({"v": 1, "node": "node-1"}).encode(), "missing_field"),
    (json.dumps({**good_telemetry(), "node": 5}).encode(), "wrong_type"),
    (json.dumps({"v": 1, "node": "node-1", "items": [{"seq": "7", "ts": 1, "model": "s", "model_version": 1,
                                                      "result": 1, "score": 1}]}).encode(), "wrong_type"),
    (json.dumps({"v": 1, "node": "node-1", "items": [{"seq": True, "ts": 1, "model": "s", "model_version": 1,
                                                      "result": 1, "score": 1}]}).encode(), "wrong_type"),
    (json.dumps({"v": 1, "node": "node-1", "items": []}).encode(), "bad_value"),
    (json.dumps({"v": 1, "node": "no/de", "items": good_telemetry()["items"]}).encode(), "bad_value"),
    (b" " * (p.MAX_JSON_BYTES + 1), "oversize"),
])
def test_decoder_rejects_with_reason(payload, reason):
    with pytest.raises(p.ContractError) as e:
        p.decode(p.TELEMETRY, payload)
    assert e.value.reason == reason


def _item_mutants():
    base = good_telemetry()["items"][0]
    values = [None, True, False, 0, -1, 2**63, 1.5, float("nan"), "", "x", [], [1.0], [True], ["1"], {}, [0.5] * 513]
    yield base
    for field in (*p._TELEMETRY_ITEM, "extra"):
        yield {k: v for k, v in base.items() if k != field}
        for value in values:
            yield dict(base, **{field: value})
    yield [base]
    yield None


def test_the_everyday_item_shortcut_never_passes_what_the_full_check_refuses():
    plain = 0
    for item in _item_mutants():
        if p._plain_item(item):
            plain += 1
            p._check_item(item, 0)                 # must not raise
    assert plain >= 10                             # and it does take the everyday items


@pytest.mark.parametrize("node", ["n", "a" * 32, "Node_1.x-Y"])
def test_good_node_ids(node):
    assert p._check_id(node, "node id") == node


@pytest.mark.parametrize("node", ["", "a" * 33, "no de", "n/1", "n+", "n#", "nöde", "n\x00", "\u0661", 5])
def test_bad_node_ids(node):
    with pytest.raises(p.ContractError):
        p._check_id(node, "node id")


def test_encoder_refuses_oversize():
    msg = good_telemetry()
    msg["items"] = [dict(msg["items"][0], seq=i, features=[0.123456789] * 300) for i in range(10)]
    with pytest.raises(p.ContractError) as e:
        p.encode(p.TELEMETRY, msg)
    assert e.value.reason == "oversize"


def test_topics():
    t = p.topic("site-a", "node-1", p.OTA_CHUNK)
    assert t == "tinyfleet/site-a/node-1/ota/chunk"
    assert p.parse_topic(t) == ("site-a", "node-1", "ota/chunk")
    assert p.site_filter("site-a", p.TELEMETRY) == "tinyfleet/site-a/+/telemetry"
    for bad in ["other/site/node/telemetry", "tinyfleet/a/b/unknown", "tinyfleet/a/b", "tinyfleet/a/b+/telemetry",
                "tinyfleet/" + "s" * 40 + "/n/telemetry"]:
        with pytest.raises(p.ContractError) as e:
            p.parse_topic(bad)
        assert e.value.reason == "bad_topic"


def test_hmac_matches_the_standard_library():
    for key in [b"k", b"x" * 64, b"y" * 100]:
        msg = b"tinyfleet" * 7
        assert p.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_manifest_verifies_and_tampering_is_caught():
    m = manifest()
    assert p.verify_manifest(m, b"fleet-key") is m
    assert p.golden_vectors(m) == [(b"\x00", b"\x7f")]
    with pytest.raises(p.ContractError) as e:
        p.verify_manifest(m, b"other-key")
    assert e.value.reason == "bad_hmac"
    for field, value in [("version", 3), ("sha256", "0" * 64), ("rollback", True), ("size", 999),
                         ("golden", [["AA==", "AA=="]]), ("hmac", "zz")]:
        tampered = dict(m, **{field: value})
        with pytest.raises(p.ContractError) as e:
            p.verify_manifest(tampered, b"fleet-key")
        assert e.value.reason == "bad_hmac", field


def test_chunks_round_trip_and_reject_corruption():
    sha = hashlib.sha256(b"blob").hexdigest()
    frame = p.encode_chunk(sha, 3, b"hello world")
    assert len(frame) == p.CHUNK_HEADER_SIZE + 11
    assert p.decode_chunk(frame) == (p.blob_id(sha), 3, b"hello world")
    flipped = bytearray(frame)
    flipped[-1] ^= 0x01
    cases = [(bytes(flipped), "bad_crc"), (frame[:-2], "bad_value"), (frame[:10], "bad_value"),
             (b"XX" + frame[2:], "bad_value"), (frame[:2] + b"\x09" + frame[3:], "bad_version")]
    for payload, reason in cases:
        with pytest.raises(p.ContractError) as e:
            p.decode_chunk(payload)
        assert e.value.reason == reason
    with pytest.raises(p.ContractError):
        p.encode_chunk(sha, 0, b"x" * (p.MAX_CHUNK_DATA + 1))


def test_serial_frames_round_trip_and_reject_bad_crc_and_truncation():
    payload = p.encode(p.TELEMETRY, good_telemetry())
    line = p.encode_serial_frame(p.TELEMETRY, payload)
    assert line.endswith(b"\n") and line.startswith(b"TF1 telemetry ")
    assert p.decode_serial_frame(line) == (p.TELEMETRY, payload)
    chunk = p.encode_chunk(hashlib.sha256(b"b").hexdigest(), 0, bytes(range(256)))
    assert p.decode_serial_frame(p.encode_serial_frame(p.OTA_CHUNK, chunk)) == (p.OTA_CHUNK, chunk)
    bad_crc = line[:-3] + (b"0" if line[-3:-2] != b"0" else b"1") + line[-2:]
    truncated = line[: len(line) // 2]
    for bad, reason in [(bad_crc, "bad_crc"), (truncated, "bad_value"), (b"hello\n", "bad_value"),
                        (b"TF1 nope QUJD 00000000\n", "bad_topic")]:
        with pytest.raises(p.ContractError) as e:
            p.decode_serial_frame(bad)
        assert e.value.reason == reason


def test_uptime_timestamps_are_stamped_with_the_relay_clock():
    now = 1_790_000_000_000
    msg = p.telemetry("nano-1", [{"seq": 1, "ts": 4_000, "model": "sine", "model_version": 1, "result": 0.1, "score": 0.0},
                                 {"seq": 2, "ts": 5_000, "model": "sine", "model_version": 1, "result": 0.2, "score": 0.0}])
    out = p.stamp_uptime(p.TELEMETRY, msg, now)
    assert [it["ts"] for it in out["items"]] == [now - 1_000, now]   # spacing kept, newest = now
    assert p.stamp_uptime(p.HEARTBEAT, {"node": "nano-1", "ts": 9}, now)["ts"] == now
    epoch = p.telemetry("esp32-1", [{"seq": 1, "ts": now, "model": "sine", "model_version": 1, "result": 0.1, "score": 0.0}])
    assert p.stamp_uptime(p.TELEMETRY, epoch, now + 5) is None        # a board with a clock is left alone
