"""Keyword spotting on the ESP32 node: the on-device log-mel (features.LogMel)
against training's numpy front end (training/datasets/keyword.py) on CPython and
inside the real MicroPython; a simulated keyword node (I2S microphone playing
synthesized clips) against a real mosquitto; its config.

Clips come from node_firmware/sim/devices.SimMicrophone: words synthesized with
espeak-ng + sox in voices the committed model (models/keyword/1) never heard in
training, cached under var/keyword/sim/ after the first run."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import KEY_HEX, SITE

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "keyword" / "1"
N_CLIPS = 20

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="the simulated microphone needs espeak-ng and sox")


@pytest.fixture(scope="module")
def blob():
    return (MODEL / "model.tfmb").read_bytes()


@pytest.fixture(scope="module")
def clips():
    """N_CLIPS (label, int16 second) pairs: every keyword label twice, seed 0."""
    from node_firmware.sim.devices import SimMicrophone
    mic = SimMicrophone(seed=0)
    return [mic.next_clip() for _ in range(N_CLIPS)]


def training_side(clips):
    """What the training pipeline computes for these clips: numpy log-mel, its int8
    quantization (training/convert.py) and the int8 model's top-1 on TFLM."""
    from training import tflm
    from training.convert import io_details, quantize
    from training.datasets.keyword import log_mel
    tflite = (MODEL / "int8.tflite").read_bytes()
    d = io_details(tflite)
    feats = np.stack([log_mel(pcm / 32768.0).ravel() for _, pcm in clips])
    q = quantize(feats, d["input_scale"], d["input_zero_point"])
    top1 = np.argmax(np.asarray(tflm.run_batch(tflite, q)).reshape(len(clips), -1), axis=1)
    return feats, q, top1


def device_top1(q):
    from training import tflm
    tflite = (MODEL / "int8.tflite").read_bytes()
    return np.argmax(np.asarray(tflm.run_batch(tflite, q)).reshape(len(q), -1), axis=1)


def parity(q_train, q_device):
    """(share of identical int8 input bytes, largest difference in quantization steps)."""
    d = np.abs(q_train.astype(int) - q_device.astype(int))
    return float(np.mean(d == 0)), int(d.max())


def test_logmel_tables_match_training():
    from node_firmware.micropython import features as F
    from training.datasets import keyword as K
    assert (F.KW_RATE, F.KW_FRAME, F.KW_HOP, F.KW_NFFT, F.KW_FRAMES, F.KW_MELS) == \
        (K.RATE, K.FRAME, K.HOP, K.NFFT, K.N_FRAMES, K.N_MELS)
    lm = F.LogMel()
    fb = np.zeros_like(K._MEL)
    for m, (first, count, off) in enumerate(lm.rows):
        fb[m, first:first + count] = lm.weights[off:off + count]
    np.testing.assert_allclose(fb, K._MEL, atol=1e-6)
    np.testing.assert_allclose(np.array(lm.win) * 32768.0, np.hanning(K.FRAME), atol=1e-6)


def test_logmel_on_cpython_matches_training(clips, blob):
    from contract import blob as B
    from node_firmware.micropython import features as F
    from node_firmware.sim import node  # noqa: F401  (tinyfleet_node on the path)
    from tinyfleet_node.inference import Inference

    class NoModel:
        def load_model(self, blob, budget):
            return None

    inf = Inference(NoModel(), blob, None, "classify")
    assert B.parse(blob)["input_scale"] == inf.hdr["input_scale"]
    feats, q_train, top1 = training_side(clips)
    lm = F.LogMel()
    got = np.stack([np.array(lm.compute(pcm.tolist())) for _, pcm in clips])
    assert np.abs(got - feats).max() < 1e-3
    q_dev = np.stack([np.frombuffer(inf.quantize(lm.compute(pcm.tolist())), dtype=np.int8) for _, pcm in clips])
    same, worst = parity(q_train, q_dev)
    assert same >= 0.999 and worst <= 1, (same, worst)
    assert (device_top1(q_dev) == top1).all()


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_keyword_source_under_micropython_matches_training(clips, blob, tmp_path):
    """KeywordSource + LogMel + Inference.quantize in the real MicroPython: the int8 input
    bytes are those of training's numpy front end for almost every element, and the int8
    model's top-1 on them is training's on every clip."""
    from training.datasets.keyword import CLASSES
    (tmp_path / "clips.pcm").write_bytes(np.concatenate([pcm for _, pcm in clips]).astype("<i2").tobytes())
    (tmp_path / "model.tfmb").write_bytes(blob)
    parts = (ROOT / "tests" / "node" / "esp32_keyword_wasm.py").read_text().split("\n# ---- part")
    for i, part in enumerate(parts):
        (tmp_path / ("part%d.py" % i)).write_text(part if i == 0 else "#" + part)
    cmd = ["node", str(ROOT / "node_firmware" / "wasm" / "run.mjs"), "--heap", "1m",
           "--mount", "%s:/lib/contract" % (ROOT / "contract"),
           "--mount", "%s:/lib" % (ROOT / "node_firmware" / "esp32" / "lib"),
           "--file", "%s:/lib/features.py" % (ROOT / "node_firmware" / "micropython" / "features.py"),
           "--file", "%s:/data/clips.pcm" % (tmp_path / "clips.pcm"),
           "--file", "%s:/data/model.tfmb" % (tmp_path / "model.tfmb"),
           "--fetch", "/data/feats.out:%s" % (tmp_path / "feats.out"),
           "--fetch", "/data/int8.out:%s" % (tmp_path / "int8.out")]
    for i in range(1, len(parts)):
        cmd += ["--then", str(tmp_path / ("part%d.py" % i))]
    cmd += [str(tmp_path / "part0.py"), "/data/clips.pcm", "/data/model.tfmb", "/data/feats.out", "/data/int8.out"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["clips"] == N_CLIPS
    got = np.frombuffer((tmp_path / "feats.out").read_bytes(), dtype=np.float32).reshape(N_CLIPS, -1)
    q_dev = np.frombuffer((tmp_path / "int8.out").read_bytes(), dtype=np.int8).reshape(N_CLIPS, -1)
    feats, q_train, top1 = training_side(clips)
    assert np.abs(got - feats).max() < 1e-3
    same, worst = parity(q_train, q_dev)
    dev = device_top1(q_dev)
    print("\nMicroPython keyword path: %.5f of int8 input bytes identical, max %d step(s); top-1 agrees on %d/%d; "
          "%d/%d clips labelled as spoken; log-mel %.0f ms/clip (CPU), sample() %.0f ms, tables %.0f ms, "
          "source RAM %d B" % (same, worst, int((dev == top1).sum()), N_CLIPS,
                               sum(CLASSES[int(k)] == lab for k, (lab, _) in zip(dev, clips)), N_CLIPS,
                               np.median(info["logmel_us"]) / 1000, np.median(info["sample_us"]) / 1000,
                               info["init_us"] / 1000, info["ram_bytes"]))
    assert same >= 0.999 and worst <= 1, (same, worst)
    assert (dev == top1).all()
    assert sum(CLASSES[int(k)] == lab for k, (lab, _) in zip(dev, clips)) >= 0.8 * N_CLIPS


def test_keyword_node_publishes_the_words_it_hears(blob, gateway, mosquitto, tmp_path):
    """A simulated ESP32 keyword node on the real broker: valid telemetry whose results
    are mostly the words the microphone played. runtime=reference: bit-exact with tfmicro
    (next test) and ~30x faster on CPython (the DS-CNN is 2.6 M MACs)."""
    from contract import protocol as P
    from node_firmware.sim.hal import Board
    from node_firmware.sim.node import SimNode
    from training.datasets.keyword import CLASSES
    words = ["yes", "no", "stop", "_silence_"]
    node = SimNode.create(tmp_path / "kw-1", "kw-1", SITE, mosquitto.url, "keyword", blob, KEY_HEX,
                          board=Board(0, 0, words=words), runtime="reference",
                          sample_ms=20, batch=4, heartbeat_ms=200)
    assert node.node.cfg["sensor"] == "microphone" and node.node.cfg["send_features"] is False
    node.run(60, until=lambda: len(gateway.telemetry["kw-1"]) >= 16 and gateway.heartbeats["kw-1"])
    items = gateway.telemetry["kw-1"]
    assert len(items) >= 16 and not gateway.errors  # every message passed contract.decode
    assert [i["seq"] for i in items] == list(range(len(items)))
    assert {i["model"] for i in items} == {"keyword"} and {i["model_version"] for i in items} == {1}
    assert all(i["result"] in CLASSES and 0.0 < i["score"] <= 1.0 and "features" not in i for i in items)
    played = node.hal.sim_board.microphone.played
    hits = sum(i["result"] == played[i["seq"]] for i in items)
    assert hits >= 0.8 * len(items), [(played[i["seq"]], i["result"]) for i in items]
    assert gateway.heartbeats["kw-1"][0]["models"] == {"keyword": 1}
    assert gateway.status["kw-1"] == "online" and node.node.inference_errors == 0
    for i in items:  # what a strict consumer does with them
        P.encode(P.TELEMETRY, {"v": P.SCHEMA, "node": "kw-1", "items": [i]})


def test_tfmicro_and_reference_agree_on_the_node_inputs(blob, tmp_path):
    """The pure-MicroPython runtime the ESP32 runs gives the numpy runtime's bytes on
    what a keyword node hears (timed: one tfmicro inference of the DS-CNN on CPython)."""
    import time

    from node_firmware.sim.hal import Board
    from node_firmware.sim.node import SimNode
    url = "mqtt://127.0.0.1:1"  # never connects; only the sample path runs
    a = SimNode.create(tmp_path / "a", "a", SITE, url, "keyword", blob, KEY_HEX, board=Board(0, 3))
    b = SimNode.create(tmp_path / "b", "b", SITE, url, "keyword", blob, KEY_HEX, board=Board(0, 3),
                       runtime="reference")
    for _ in range(3):
        t = time.perf_counter()
        feats, _ = a.node.source.sample()
        t_feat = time.perf_counter() - t
        q = a.node.model.quantize(feats)
        t = time.perf_counter()
        out = a.node.model.model.invoke(q)
        t_tfm = time.perf_counter() - t
        t = time.perf_counter()
        assert b.node.model.model.invoke(q) == out
        t_ref = time.perf_counter() - t
    print("\nCPython per clip: log-mel+mic %.0f ms, tfmicro %.0f ms, reference %.1f ms"
          % (t_feat * 1000, t_tfm * 1000, t_ref * 1000))


@pytest.mark.parametrize("change,message", [
    ({"send_features": True}, "send_features must be false for the microphone"),
    ({"sensor": "vibration"}, "model 'keyword' takes the features of sensor 'microphone', not 'vibration'"),
    ({"sensor": "ear"}, "sensor must be one of"),
    ({"i2s": {"sck": "D5"}}, "i2s.sck must be a number"),
    ({"i2s": {"sclk": 5}}, "unknown field 'sclk' in i2s"),
])
def test_keyword_config_errors_are_clear(change, message):
    from node_firmware.sim import node  # noqa: F401
    from tinyfleet_node import config
    raw = {"node_id": "n1", "site": SITE, "broker": "mqtt://127.0.0.1:1883", "model": "keyword", "hmac_key": KEY_HEX}
    cfg = config.validate(dict(raw))
    assert cfg["sensor"] == "microphone" and cfg["task"] == "classify" and cfg["send_features"] is False
    raw.update(change)
    with pytest.raises(config.ConfigError) as e:
        config.validate(raw)
    assert message in str(e.value)


def test_short_i2s_reads_are_put_together():
    from node_firmware.sim import node  # noqa: F401
    from tinyfleet_node.sensors import KeywordSource

    class Trickle:
        """Gives at most 1000 samples per read, like a non-blocking I2S."""
        def __init__(self):
            self.calls = 0

        def readinto(self, buf):
            self.calls += 1
            n = min(len(buf), 1000)
            memoryview(buf).cast("B")[:2 * n] = np.full(n, self.calls, dtype="<i2").tobytes()
            return 2 * n

    mic = Trickle()
    src = KeywordSource(mic)
    feats, truth = src.sample()
    assert mic.calls == 16 and truth is None and len(feats) == 49 * 40
    assert src.audio[0] == 1 and src.audio[15999] == 16

    class Dead:
        def readinto(self, buf):
            return 0

    with pytest.raises(OSError, match="no samples"):
        KeywordSource(Dead()).sample()
