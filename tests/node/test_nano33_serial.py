"""Serial framing and telemetry of the Nano 33 C core: C and contract.protocol
frames agree byte for byte, and both sides drop bad-CRC, truncated and oversize
lines (counted by the node, refused by the gateway's decoder)."""
import random

import pytest

from contract import protocol as P

import nano33_harness as H


def c_encode(kind, payload):
    r = H.tool("frame-encode", kind, data=payload)
    assert r.returncode == 0, r.stdout
    return r.stdout


def c_decode(line):
    r = H.tool("frame-decode", data=line)
    return (r.returncode, r.stdout.decode().rstrip("\n"))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 100, 4118, P.MAX_SERIAL_LINE // 4 * 3 - 40])
def test_c_frames_equal_contract_frames(size):
    rng = random.Random(size)
    payload = bytes(rng.randrange(256) for _ in range(size))
    for kind in P.KINDS:
        try:
            want = P.encode_serial_frame(kind, payload)
        except P.ContractError:
            assert H.tool("frame-encode", kind, data=payload).returncode == 1
            continue
        assert c_encode(kind, payload) == want
        assert c_decode(want) == (0, "%s %s" % (kind, payload.hex()))


def corruptions(line):
    body = line.rstrip(b"\n")
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x04  # one bit of the base64 text
    crc = body[:-8] + (b"%08x" % ((int(body[-8:], 16) + 1) & 0xFFFFFFFF))
    return {
        "bad_crc": crc + b"\n",
        "flipped_bit": bytes(flipped) + b"\n",
        "truncated_payload": body[:len(body) // 2] + b"\n",
        "truncated_crc": body[:-3] + b"\n",
        "no_prefix": body[4:] + b"\n",
        "unknown_kind": body.replace(b"ota/offer", b"ota/offr", 1) + b"\n",
    }


def test_both_decoders_reject_bad_crc_and_truncated_frames():
    line = P.encode_serial_frame(P.OTA_OFFER, b'{"v":1,"some":"payload to corrupt"}')
    for name, bad in corruptions(line).items():
        code, why = c_decode(bad)
        assert code == 1, name
        with pytest.raises(P.ContractError):
            P.decode_serial_frame(bad)
        if name == "bad_crc":
            assert why == "crc"


def test_node_drops_and_counts_bad_frames_then_still_takes_a_good_one(tmp_path):
    from training import testmodels, tflite_to_blob
    blob = tflite_to_blob.convert(testmodels.get("dense_sine"), "sine", 1)
    node = H.Node(tmp_path / "n", factory=blob)
    try:
        m = P.build_manifest(H.FLEET_KEY, "fleet", "d-1", "sine", 1, blob, 128, [])  # a downgrade: quick FAILED
        good = P.encode_serial_frame(P.OTA_OFFER, P.encode(P.OTA_OFFER, m))
        bad = corruptions(good)
        for name in ("bad_crc", "flipped_bit", "truncated_payload", "truncated_crc", "unknown_kind"):
            node.write(bad[name])
        node.write(b"TF1 ota/offer " + b"A" * 9000 + b" 00000000\n")  # longer than a line may be
        node.write(b"\n\n")  # empty lines are ignored
        _, hb = node.next((P.HEARTBEAT,))
        _, hb = node.next((P.HEARTBEAT,))  # one sent after all of the above arrived
        assert hb["serial"]["bad_crc"] == 2  # bad crc, flipped bit
        assert hb["serial"]["malformed"] == 3  # two truncations, unknown kind
        assert hb["serial"]["oversize"] == 1
        assert hb["serial"]["frames"] == 0
        assert not any(k == P.OTA_STATE for k, _ in node.seen)
        node.write(good)
        _, st = node.next((P.OTA_STATE,))
        assert st["state"] == "QUEUED"
    finally:
        node.stop()


@pytest.mark.parametrize("model,task,check", [
    ("dense_sine", "regress", lambda it: isinstance(it["result"], (int, float))),
    ("conv_softmax", "classify", lambda it: it["result"] in range(5) and 0 <= it["score"] <= 1),
])
def test_node_publishes_telemetry_that_the_contract_accepts(tmp_path, model, task, check):
    from training import testmodels, tflite_to_blob
    blob = tflite_to_blob.convert(testmodels.get(model), model, 4)
    node = H.Node(tmp_path / "n", factory=blob, extra=("--task", task, "--send-features"))
    try:
        kind, st = node.next((P.STATUS,))
        assert st["state"] == "online" and st["node"] == "nano-7"
        seqs = []
        for _ in range(5):
            _, t = node.next((P.TELEMETRY,))
            it = t["items"][0]
            assert it["model"] == model and it["model_version"] == 4 and check(it)
            seqs.append(it["seq"])
        assert seqs == sorted(set(seqs))
        _, hb = node.next((P.HEARTBEAT,))
        assert hb["board"] == "nano33ble" and hb["models"] == {model: 4} and hb["runtime"] == P.RUNTIME_VERSION
        assert not node.bad_lines  # every line the node wrote decoded with contract.protocol.decode
        # status repeats with the heartbeat (a reopened gateway port has published the will meanwhile)
        assert sum(k == P.STATUS for k, _ in node.seen) >= 2
        last = seqs[-1]
    finally:
        node.stop()
    again = H.Node(tmp_path / "n", factory=blob)  # seq keeps increasing across a reset
    try:
        _, t = again.next((P.TELEMETRY,))
        assert t["items"][0]["seq"] > last
    finally:
        again.stop()


def test_node_without_any_valid_model_still_talks(tmp_path):
    node = H.Node(tmp_path / "n", factory=b"TFMB" + bytes(100))
    try:
        _, hb = node.next((P.HEARTBEAT,))
        assert hb["models"] == {}
    finally:
        node.stop()
