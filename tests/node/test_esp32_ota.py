"""OTA on a simulated ESP32 node running the real firmware code against a real
mosquitto, with the gateway side played by tests/node/gateway_side.py."""
import json

import pytest

from contract import blob as blobfmt
from contract import protocol as P
import esp32_models as models
from conftest import FLEET_KEY

CHUNK = 64
GOOD = [P.QUEUED, P.DOWNLOADING, P.DOWNLOADED, P.VERIFIED, P.UPDATING, P.UPDATED]


def manifest(blob, version, dep="d-1", model="sine", golden=None, key=FLEET_KEY, **kw):
    if golden is None:
        golden = models.golden(blob)
    return P.build_manifest(key, "fleet", dep, model, version, blob, CHUNK, golden, **kw)


def run_until_final(node, gateway, dep, seconds=20):
    node.run(seconds, until=lambda: gateway.final(node.node.node_id, dep) is not None)
    return gateway.final(node.node.node_id, dep)


def pointer(node):
    return json.loads(open(node.root + "/models/active.json").read())


def test_good_update_reaches_updated(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50)
    gateway.offer("esp32-1", manifest(blobs["sine"][2], 2), blobs["sine"][2])
    assert run_until_final(node, gateway, "d-1") == (P.UPDATED, None)
    assert [s for s, _ in gateway.states_of("esp32-1", "d-1")] == GOOD
    assert node.node.model_version == 2 and pointer(node)["slot"] == 1 and not pointer(node)["trial"]
    assert open(node.root + "/models/slot_b.tfmb", "rb").read() == blobs["sine"][2]
    # telemetry continues on the new model
    n = len(gateway.telemetry["esp32-1"])
    node.run(5, until=lambda: any(i["model_version"] == 2 for i in gateway.telemetry["esp32-1"][n:]))
    assert any(i["model_version"] == 2 for i in gateway.telemetry["esp32-1"][n:])
    assert gateway.served["esp32-1"] == len(blobs["sine"][2])  # nothing fetched twice
    assert not gateway.errors


def _bad_hmac(b):
    m = manifest(b, 2)
    m["hmac"] = ("0" if m["hmac"][0] != "0" else "1") + m["hmac"][1:]
    return m


@pytest.mark.parametrize("case,reason", [
    ("bad_hmac", "bad_hmac"),
    ("unsigned_change", "bad_hmac"),
    ("wrong_key", "bad_hmac"),
    ("wrong_model", "wrong_model"),
    ("same_version", "downgrade"),
    ("runtime", "runtime_too_old"),
    ("oversize", "too_large"),
])
def test_offer_rejected(case, reason, blobs, gateway, make_node):
    b = blobs["sine"][2]
    node = make_node("sine", blobs["sine"][1], sample_ms=50, max_blob=1024)
    if case == "bad_hmac":
        m = _bad_hmac(b)
    elif case == "unsigned_change":
        m = manifest(b, 2)
        m["version"] = 99  # changed after signing
    elif case == "wrong_key":
        m = manifest(b, 2, key=b"another fleet's key, 32 bytes!!!")
    elif case == "wrong_model":
        b = blobs["weather"][2]
        m = manifest(b, 2, model="weather")
    elif case == "same_version":
        m = manifest(b, 1)
    elif case == "runtime":
        m = manifest(b, 2, min_runtime=P.RUNTIME_VERSION + 1)
    else:
        b = models.blob("anomaly", 2, as_name="sine")  # bigger than max_blob
        m = manifest(b, 2)
        assert m["size"] > 1024
    gateway.offer("esp32-1", m, b)
    assert run_until_final(node, gateway, "d-1", 10) == (P.FAILED, reason)
    assert gateway.states_of("esp32-1", "d-1") == [(P.FAILED, reason)]
    assert node.node.model_version == 1 and gateway.served["esp32-1"] == 0
    assert node.node.inference_errors == 0


def test_downgrade_rejected_but_signed_rollback_accepted(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][2], sample_ms=50)
    assert node.node.model_version == 2
    gateway.offer("esp32-1", manifest(blobs["sine"][1], 1, dep="down"), blobs["sine"][1])
    assert run_until_final(node, gateway, "down") == (P.FAILED, "downgrade")
    gateway.offer("esp32-1", manifest(blobs["sine"][1], 1, dep="back", rollback=True), blobs["sine"][1])
    assert run_until_final(node, gateway, "back") == (P.UPDATED, None)
    assert node.node.model_version == 1


def test_malformed_offer_is_bad_manifest(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50)
    m = manifest(blobs["sine"][2], 2)
    del m["sha256"]
    gateway.offer_raw("esp32-1", json.dumps(m).encode())
    assert run_until_final(node, gateway, "d-1", 10) == (P.FAILED, "bad_manifest")


def test_tampered_chunk_with_bad_crc_is_refetched(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50)
    spoiled = set()

    def flip_once(i, frame):
        if i == 3 and i not in spoiled:
            spoiled.add(i)
            return frame[:-1] + bytes([frame[-1] ^ 0x55])  # data changed, crc kept
        return frame

    gateway.tamper = flip_once
    gateway.offer("esp32-1", manifest(blobs["sine"][2], 2), blobs["sine"][2])
    assert run_until_final(node, gateway, "d-1") == (P.UPDATED, None)
    assert node.ota.crc_errors == 1
    assert any(r["index"] == 3 for r in gateway.requests)  # re-requested from the bad chunk on
    assert sum(1 for r in gateway.requests if r["index"] <= 3 < r["index"] + r["count"]) >= 2


def test_a_lost_chunk_is_fetched_alone_and_the_rest_of_the_window_is_kept(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50, ota_window=8)
    lost = set()

    def lose_chunk_2_once(i, frame):
        if i == 2 and i not in lost:
            lost.add(i)
            return None
        return frame

    b = blobs["sine"][2]
    gateway.tamper = lose_chunk_2_once
    gateway.offer("esp32-1", manifest(b, 2), b)
    assert run_until_final(node, gateway, "d-1") == (P.UPDATED, None)
    assert {"index": 2, "count": 1} in [{k: r[k] for k in ("index", "count")} for r in gateway.requests]
    assert gateway.served["esp32-1"] == len(b)   # every chunk arrived once: only the lost one was sent again
    assert node.ota.stored == len(b)


def test_tampered_blob_passing_crc_fails_sha256(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50)
    m = manifest(blobs["sine"][2], 2)

    def rewrite(i, frame):
        data = bytearray(frame[P.CHUNK_HEADER_SIZE:])
        if i == 2:
            data[0] ^= 0x01
        return P.encode_chunk(m["sha256"], i, bytes(data))  # valid crc over bad data

    gateway.tamper = rewrite
    gateway.offer("esp32-1", m, blobs["sine"][2])
    assert run_until_final(node, gateway, "d-1") == (P.FAILED, "bad_sha256")
    assert [s for s, _ in gateway.states_of("esp32-1", "d-1")][-2:] == [P.DOWNLOADED, P.FAILED]
    assert node.ota.crc_errors == 0 and node.node.model_version == 1
    assert pointer(node)["slot"] == 0


def test_self_test_failure_rolls_back(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50)
    wrong = [(i, bytes(b ^ 0x7F for b in o)) for i, o in models.golden(blobs["sine"][2])]
    gateway.offer("esp32-1", manifest(blobs["sine"][2], 2, golden=wrong), blobs["sine"][2])
    assert run_until_final(node, gateway, "d-1") == (P.ROLLED_BACK, "self_test")
    assert [s for s, _ in gateway.states_of("esp32-1", "d-1")] == GOOD[:-1] + [P.ROLLED_BACK]
    assert node.node.model_version == 1 and pointer(node)["slot"] == 0
    blobfmt.parse(open(node.root + "/models/slot_a.tfmb", "rb").read())
    n = len(gateway.telemetry["esp32-1"])
    node.run(3, until=lambda: len(gateway.telemetry["esp32-1"]) > n + 2)
    assert {i["model_version"] for i in gateway.telemetry["esp32-1"][n:]} == {1}


def test_failing_first_inferences_roll_back(blobs, gateway, make_node):
    """Passes its golden vectors, but takes 32 inputs where the sensor gives 24."""
    from training import testmodels
    from training.tflite_to_blob import convert
    bad = bytes(convert(testmodels.get("autoencoder"), "anomaly", 2))
    node = make_node("anomaly", blobs["anomaly"][1], sample_ms=50)
    gateway.offer("esp32-1", manifest(bad, 2, model="anomaly"), bad)
    assert run_until_final(node, gateway, "d-1") == (P.ROLLED_BACK, "inference_errors")
    assert node.node.model_version == 1 and pointer(node)["slot"] == 0


def test_download_resumes_after_power_cut_and_broker_restart(blobs, gateway, make_node, mosquitto):
    from node_firmware.sim.node import PowerCut, SimNode
    b = blobs["anomaly"][2]
    node = make_node("anomaly", blobs["anomaly"][1], sample_ms=100)
    m = manifest(b, 2, model="anomaly")
    n_chunks = P.chunk_count(len(b), CHUNK)
    node.hal.fs.cut_at = None
    gateway.offer("esp32-1", m, b)
    node.run(10, until=lambda: node.ota.job is not None and node.ota.job["next"] >= n_chunks // 3)
    node.hal.fs.cut_at = node.hal.fs.ops + 1  # the very next flash write loses power
    received, stored = node.ota.received, node.ota.stored
    with pytest.raises(PowerCut):
        node.run(10)
    node.kill()
    node2 = SimNode(node.root)
    assert node2.ota.job["state"] == P.DOWNLOADING
    node2.run(10, until=lambda: node2.ota.job is not None and node2.ota.job["next"] >= 2 * n_chunks // 3)
    mosquitto.restart()
    assert run_until_final(node2, gateway, "d-1", 30) == (P.UPDATED, None)
    refetched = stored + node2.ota.stored - len(b)  # resumed from the last good chunk
    assert 0 <= refetched <= CHUNK
    assert received + node2.ota.received - len(b) <= 8 * CHUNK  # in-flight window delivered again at most
    assert node2.node.model_version == 2


def test_silent_gateway_times_out(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50, ota_timeout_ms=150, ota_retries=2)
    m = manifest(blobs["sine"][2], 2)
    gateway.c.publish(P.topic("site-1", "esp32-1", P.OTA_OFFER), P.encode(P.OTA_OFFER, m), qos=1, retain=True)
    assert run_until_final(node, gateway, "d-1") == (P.FAILED, "timeout")
    assert len([r for r in gateway.requests if r["index"] == 0]) == 3  # first ask + 2 retries
    assert node.node.model_version == 1


def test_newer_deployment_replaces_a_running_one(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50)
    stuck = manifest(blobs["sine"][2], 2, dep="d-old")  # never served
    gateway.c.publish(P.topic("site-1", "esp32-1", P.OTA_OFFER), P.encode(P.OTA_OFFER, stuck), qos=1, retain=True)
    node.run(5, until=lambda: (P.DOWNLOADING, None) in gateway.states_of("esp32-1", "d-old"))
    gateway.offer("esp32-1", manifest(blobs["sine"][2], 2, dep="d-new"), blobs["sine"][2])
    assert run_until_final(node, gateway, "d-new") == (P.UPDATED, None)
    assert gateway.final("esp32-1", "d-old") == (P.FAILED, "aborted")


def test_power_cut_in_the_slot_switch_by_name(blobs, gateway, make_node):
    """The named hook: cut right before the pointer rename that switches slots."""
    from node_firmware.sim.node import PowerCut, SimNode
    node = make_node("sine", blobs["sine"][1], sample_ms=50)
    node.kill()
    gateway.offer("esp32-1", manifest(blobs["sine"][2], 2), blobs["sine"][2])
    seen = []

    def at_switch(op, path):
        if op == "rename" and path.endswith("active.json") and seen:
            return True
        if op == "write" and path.endswith("slot_b.tfmb"):
            seen.append(path)
        return False

    node = SimNode(node.root, cut_if=at_switch)
    with pytest.raises(PowerCut, match="active.json"):
        node.run(10)
    node.kill()
    assert pointer(node)["slot"] == 0  # the old pointer still stands: slot A, a valid model
    node = SimNode(node.root)  # the reboot resumes: switch, self-test, trial
    assert run_until_final(node, gateway, "d-1") == (P.UPDATED, None)
    assert node.node.model_version == 2
    node.kill()


def _reboots_on_trial(blobs, gateway, make_node, power_lost):
    """Update sine 1 -> 2 on a node that samples once a minute, so it sits on trial, and
    reboot it MAX_TRIAL_BOOTS + 2 times there; then sample fast and let the trial end."""
    from node_firmware.sim.node import SimNode
    from tinyfleet_node.slots import MAX_TRIAL_BOOTS
    node = make_node("sine", blobs["sine"][1], sample_ms=60000, trial_sample_ms=60000)
    gateway.offer("esp32-1", manifest(blobs["sine"][2], 2), blobs["sine"][2])
    node.run(20, until=lambda: node.ota.trial_left is not None)
    assert pointer(node)["trial"] and pointer(node)["slot"] == 1
    for _ in range(MAX_TRIAL_BOOTS + 2):
        node.kill()
        node = SimNode(node.root, power_lost=power_lost)
    cfg = json.loads(open(node.root + "/config.json").read())
    open(node.root + "/config.json", "w").write(json.dumps({**cfg, "sample_ms": 50, "trial_sample_ms": 50}))
    node.kill()
    node = SimNode(node.root, power_lost=power_lost)
    try:
        return run_until_final(node, gateway, "d-1"), node.node.model_version
    finally:
        node.kill()


def test_power_cuts_on_trial_do_not_roll_the_update_back(blobs, gateway, make_node):
    assert _reboots_on_trial(blobs, gateway, make_node, power_lost=True) == ((P.UPDATED, None), 2)


def test_crash_reboots_on_trial_roll_the_update_back(blobs, gateway, make_node):
    assert _reboots_on_trial(blobs, gateway, make_node, power_lost=False) == ((P.ROLLED_BACK, "inference_errors"), 1)


def test_full_flash_fails_the_update_not_the_node(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1], sample_ms=50)
    node.hal.fs.full_if = lambda op, path: op == "write" and path.endswith("slot_b.tfmb")
    gateway.offer("esp32-1", manifest(blobs["sine"][2], 2), blobs["sine"][2])
    assert run_until_final(node, gateway, "d-1") == (P.FAILED, "storage")
    n = len(gateway.telemetry["esp32-1"])
    node.run(3, until=lambda: len(gateway.telemetry["esp32-1"]) > n + 2)
    assert len(gateway.telemetry["esp32-1"]) > n + 2 and node.node.model_version == 1


def test_offer_during_a_trial_waits_for_the_verdict(blobs, gateway, make_node):
    """A newer offer must not overwrite the old slot while the new model is on trial."""
    node = make_node("sine", blobs["sine"][1], sample_ms=100000, trial_sample_ms=100000, trial_inferences=2)
    gateway.offer("esp32-1", manifest(blobs["sine"][2], 2), blobs["sine"][2])
    node.run(10, until=lambda: (P.UPDATING, None) in gateway.states_of("esp32-1", "d-1"))
    v3 = models.blob("sine", 3)
    gateway.offer("esp32-1", manifest(v3, 3, dep="d-3"), v3)
    node.run(1)
    assert gateway.states_of("esp32-1", "d-3") == [] and node.ota.pending is not None
    node.node.sample()  # the trial's two inferences
    node.node.sample()
    node.run(10, until=lambda: (P.UPDATING, None) in gateway.states_of("esp32-1", "d-3"))
    node.node.sample()
    node.node.sample()
    assert run_until_final(node, gateway, "d-3") == (P.UPDATED, None)
    assert gateway.final("esp32-1", "d-1") == (P.UPDATED, None) and node.node.model_version == 3
