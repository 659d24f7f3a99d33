"""The Nano 33 core built for a Cortex-M4 (arm-none-eabi-gcc, hard float) and run
on qemu mps2-an386: the model it boots gives TFLM's bytes, its features match
features.py, and an OTA replayed over its serial input ends UPDATED (the
golden-vector self-test runs on the M4) or ROLLED_BACK."""
import subprocess

import numpy as np
import pytest

from contract import protocol as P
from node_firmware.micropython import features as F

import nano33_harness as H

def _names():
    from training import testmodels
    return testmodels.names()


@pytest.mark.parametrize("name", _names())
def test_inference_on_the_m4_matches_tflm(name, tmp_path):
    from training import testmodels, tflite_to_blob, tflm
    t = testmodels.get(name)
    blob = tflite_to_blob.convert(t, name, 1)
    x = np.random.default_rng(7).integers(-128, 128, (16, tflm.input_size(t)), dtype=np.int8)
    files = H.run_m4({"model.blob": blob, "inputs.bin": x.tobytes()}, tmp_path)
    got = np.frombuffer(files["outputs.bin"], dtype=np.int8).reshape(len(x), -1)
    want = tflm.run_batch(t, x).reshape(len(x), -1)
    assert got.shape == want.shape and np.count_nonzero(got != want) == 0


def test_features_on_the_m4_match_the_definition(tmp_path):
    from training import testmodels, tflite_to_blob
    import test_nano33_features as T
    w = T.windows(12, seed=3)
    blob = tflite_to_blob.convert(testmodels.get("dense_sine"), "sine", 1)
    files = H.run_m4({"model.blob": blob, "windows.bin": w.tobytes()}, tmp_path, count=True)
    got = np.frombuffer(files["features.bin"], dtype=np.float32).reshape(len(w), F.N_VIBRATION)
    want = np.array([F.vibration_features(*[list(map(float, a)) for a in x]) for x in w])
    assert np.abs(got - want).max() < T.TOL
    counts = [int(v) for v in files["icount.txt"].split()]
    assert len(counts) == len(w) + 1
    per_window = [c - counts[0] for c in counts[1:]]
    print("vibration features on the M4: %d..%d instructions per 3x256 window" % (min(per_window), max(per_window)))
    assert 0 < max(per_window) < 2_000_000


def replay(tmp_path, golden_fix=None):
    """Offer plus every chunk (chunk 2 first sent corrupted) as one serial stream."""
    from training import testmodels, tflite_to_blob
    t1, t2 = testmodels.get("dense_sine"), testmodels.get("dense_sine_pt")
    v1, v2 = tflite_to_blob.convert(t1, "sine", 1), tflite_to_blob.convert(t2, "sine", 2)
    gold = H.golden(t2)
    if golden_fix:
        gold = golden_fix(gold)
    m = P.build_manifest(H.FLEET_KEY, "fleet", "d-m4", "sine", 2, v2, 64, gold)
    lines = [P.encode_serial_frame(P.OTA_OFFER, P.encode(P.OTA_OFFER, m))]
    for i in range(P.chunk_count(len(v2), 64)):
        frame = P.encode_chunk(m["sha256"], i, v2[i * 64:(i + 1) * 64])
        if i == 2:
            lines.append(P.encode_serial_frame(P.OTA_CHUNK, frame[:-1] + b"\x00"))
        lines.append(P.encode_serial_frame(P.OTA_CHUNK, frame))
    files = H.run_m4({"model.blob": v1, "serial_in.txt": b"".join(lines)}, tmp_path)
    frames = [P.decode_serial_frame(line + b"\n") for line in files["serial_out.txt"].splitlines()]
    return [P.decode(k, p) for k, p in frames]


def test_ota_on_the_m4_ends_updated(tmp_path):
    msgs = replay(tmp_path)
    states = [m["state"] for m in msgs if "deployment" in m and "state" in m]
    assert states == ["QUEUED", "DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]
    requests = [m["index"] for m in msgs if "index" in m]
    assert requests.count(2) == 1 and requests[1] == 2  # the corrupted chunk was asked for again


def test_ota_on_the_m4_rolls_back_on_a_failed_self_test(tmp_path):
    msgs = replay(tmp_path, lambda g: [(i, bytes([o[0] ^ 0x80])) for i, o in g])
    assert [m["state"] for m in msgs if "state" in m and "deployment" in m][-1] == "ROLLED_BACK"


def test_core_code_size_on_the_m4():
    """The core without the runtime: serial frames, JSON, SHA-256/HMAC, features, OTA, node."""
    size = H.core_size_m4()
    print("nano33 core on Cortex-M4 -Os:", size)
    assert size["text"] < 16 * 1024


def test_core_uses_no_heap():
    """No malloc/calloc/realloc/free (or printf, which may allocate) referenced by any core object."""
    for obj in H.core_objects_m4():
        out = subprocess.run(["arm-none-eabi-nm", "-u", str(obj)], capture_output=True, text=True,
                             check=True).stdout
        undefined = {line.split()[-1] for line in out.splitlines() if line.strip()}
        assert not undefined & {"malloc", "calloc", "realloc", "free", "printf", "sprintf", "snprintf"}, obj.name
