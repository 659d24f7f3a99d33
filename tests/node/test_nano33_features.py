"""The C features (float32) against node_firmware/micropython/features.py (the
definition, run here in CPython doubles). Tolerance: 1e-4 absolute on every
feature (they are logs and standardised values of order 1-10)."""
import math
import struct

import numpy as np
import pytest

from node_firmware.micropython import features as F

import nano33_harness as H

TOL = 1e-4  # measured: 1.7e-6 max on the host build, float32 vs double


def windows(n, seed=0):
    """Vibration-like windows: shaft harmonics, bearing impulses, noise, gravity on z; plus edge cases."""
    rng = np.random.default_rng(seed)
    t = np.arange(F.WINDOW) / F.RATE_HZ
    out = []
    for i in range(n):
        w = np.zeros((3, F.WINDOW))
        for a in range(3):
            f0 = rng.uniform(10, 200)
            w[a] = rng.uniform(0.01, 1.5) * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6))
            w[a] += rng.uniform(0.001, 0.3) * rng.standard_normal(F.WINDOW)
            if i % 3 == 0:
                w[a, rng.integers(0, F.WINDOW, 4)] += rng.uniform(-3, 3, 4)  # knocks
        w[2] += 1.0
        out.append(w)
    out.append(np.zeros((3, F.WINDOW)))                 # a board lying still
    out.append(np.full((3, F.WINDOW), 0.98))            # constant
    return np.array(out, dtype=np.float32)


def test_vibration_features_match_the_definition():
    w = windows(30)
    got = np.frombuffer(H.tool("features", "vibration", data=w.tobytes()).stdout, dtype=np.float32)
    got = got.reshape(len(w), F.N_VIBRATION)
    want = np.array([F.vibration_features(*[list(map(float, a)) for a in x]) for x in w])
    err = np.abs(got - want)
    assert np.isfinite(got).all()
    assert err.max() < TOL, "max abs error %.2e at %s" % (err.max(), np.unravel_index(err.argmax(), err.shape))


def test_weather_features_match_the_definition():
    rows = [(18.5, 62.0, 1009.3, 1012.1, 14), (-12.0, 95.0, 980.0, 975.5, 0), (35.0, 20.0, 1040.0, 1040.0, 23.5)]
    data = b"".join(struct.pack("<5f", *r) for r in rows)
    got = np.frombuffer(H.tool("features", "weather", data=data).stdout, dtype=np.float32).reshape(-1, 6)
    want = np.array([F.weather_features(*r) for r in rows])
    assert np.abs(got - want).max() < TOL


@pytest.mark.parametrize("scale", [0.02, 0.05, 0.1])
def test_int8_model_inputs_almost_always_agree(scale):
    """What the model sees: inputs quantized with a typical scale differ by at most one step, rarely."""
    w = windows(60, seed=1)
    got = np.frombuffer(H.tool("features", "vibration", data=w.tobytes()).stdout, dtype=np.float32)
    want = np.array([F.vibration_features(*[list(map(float, a)) for a in x]) for x in w]).ravel()
    q = lambda v: np.clip(np.array([math.floor(abs(x) / scale + 0.5) * (1 if x >= 0 else -1) for x in v]), -128, 127)
    d = np.abs(q(got) - q(want))
    assert d.max() <= 1 and d.mean() < 0.01
