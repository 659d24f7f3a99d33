"""Bring-your-own-data loaders: valid folders load, malformed files fail naming the file."""
import struct
import wave

import numpy as np
import pytest

from training.datasets import keyword, vibration


def _csv(path, n=256, rate=1000, header="t,ax,ay,az", bad_row=None):
    lines = [header]
    for i in range(n):
        lines.append(f"{i / rate:.6f},{np.sin(i / 5):.4f},{np.cos(i / 7):.4f},{1 + 0.01 * (i % 3):.4f}")
    if bad_row is not None:
        lines[5] = bad_row
    path.write_text("\n".join(lines) + "\n")
    return path


def _wav(path, rate=16000, channels=1, n=16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{n * channels}h", *[(1000 if i % 2 else -1000) for i in range(n * channels)]))
    return path


def test_anomaly_dir_loads(tmp_path):
    (tmp_path / "normal").mkdir()
    (tmp_path / "broken").mkdir()
    for i in range(4):
        _csv(tmp_path / "normal" / f"n{i}.csv", n=512)
    _csv(tmp_path / "broken" / "b0.csv")
    d = vibration.load_dir(tmp_path)
    assert d["train"][0].shape[1] == 24
    assert set(d["test_seen"][1].tolist()) == {0, 1}


@pytest.mark.parametrize("kind, kwargs, message", [
    ("header", {"header": "time,x,y,z"}, "header t,ax,ay,az"),
    ("short", {"n": 100}, "need at least 256"),
    ("text", {"bad_row": "0.004,abc,1,1"}, "non-numeric"),
    ("columns", {"bad_row": "0.004,1,1"}, "4 columns"),
    ("rate", {"rate": 100}, "1000 Hz"),
])
def test_anomaly_dir_rejects_malformed_csv(tmp_path, kind, kwargs, message):
    (tmp_path / "normal").mkdir()
    for i in range(3):
        _csv(tmp_path / "normal" / f"ok{i}.csv")
    bad = _csv(tmp_path / "normal" / f"zz_{kind}.csv", **kwargs)
    with pytest.raises(ValueError) as e:
        vibration.load_dir(tmp_path)
    assert bad.name in str(e.value) and message in str(e.value)


def test_anomaly_dir_needs_normal_folder(tmp_path):
    with pytest.raises(ValueError, match="normal/"):
        vibration.load_dir(tmp_path)


def test_keyword_dir_loads(tmp_path):
    for word in ("on", "off"):
        (tmp_path / word).mkdir()
        for i in range(3):
            _wav(tmp_path / word / f"{i}.wav", n=8000 + i)
    d = keyword.load_dir(tmp_path)
    assert d["classes"] == ["off", "on"]
    assert d["train"][0].shape[1:] == (49, 40, 1)


@pytest.mark.parametrize("kind, message", [
    ("rate", "16000 Hz"), ("stereo", "mono"), ("garbage", "not a readable WAV"), ("empty", "no samples")])
def test_keyword_dir_rejects_malformed_wav(tmp_path, kind, message):
    for word in ("on", "off"):
        (tmp_path / word).mkdir()
        for i in range(3):
            _wav(tmp_path / word / f"{i}.wav")
    bad = tmp_path / "on" / f"bad_{kind}.wav"
    if kind == "rate":
        _wav(bad, rate=8000)
    elif kind == "stereo":
        _wav(bad, channels=2)
    elif kind == "garbage":
        bad.write_bytes(b"RIFF\x00\x00not really a wav")
    else:
        _wav(bad, n=0)
    with pytest.raises(ValueError) as e:
        keyword.load_dir(tmp_path)
    assert bad.name in str(e.value) and message in str(e.value)
