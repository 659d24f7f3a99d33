"""core/tfn_resample on the host: the Nano's IMUs sample at 952 Hz (LSM9DS1) or 800 Hz
(BMI270), the vibration features are defined at 1 kHz (features.py RATE_HZ). Resampled
windows must give the features of the same signal sampled at 1 kHz; windows taken at
the sensor rate as if they were 1 kHz must not (that was the old sketch's mismatch)."""
import math

import numpy as np
import pytest

from node_firmware.micropython import features as F

import nano33_harness as H

RATES = (952.0, 800.0, 1600.0)


def need(fin, fout=1000.0, n=256):
    if fin == fout:
        return n
    h = math.ceil(16 * fin / min(fin, fout))
    return 2 * h + 1 + math.ceil((n - 1) * fin / fout)


def half(fin, fout=1000.0):
    return math.ceil(16 * fin / min(fin, fout))


def resample(x, fin, fout=1000.0, n=256):
    x = np.asarray(x, dtype=np.float32)
    r = H.tool("resample", repr(fin), repr(fout), str(n), data=x.tobytes())
    assert r.returncode == 0, r.stderr
    return np.frombuffer(r.stdout, dtype=np.float32).reshape(-1, n)


def test_input_length_and_arguments():
    for fin in RATES:
        assert H.tool("resample", repr(fin), "1000", "256", data=bytes(4 * need(fin))).returncode == 0
        assert H.tool("resample", repr(fin), "1000", "256", data=bytes(4 * need(fin) - 4)).returncode == 2
    assert H.tool("resample", "0", "1000", "256", data=bytes(4)).returncode == 2
    x = np.arange(256, dtype=np.float32)
    assert np.array_equal(resample(x, 1000.0)[0], x)  # equal rates: a copy


@pytest.mark.parametrize("fin", RATES)
def test_passband_tones_keep_amplitude_and_phase(fin):
    """Up to 0.40 of the lower rate: within 0.7 % of the tone sampled at 1 kHz."""
    lo = min(fin, 1000.0)
    freqs = np.arange(1.0, 0.40 * lo, 7.3)
    t_in = np.arange(need(fin)) / fin
    t_out = (half(fin) + np.arange(256) * fin / 1000.0) / fin  # where the outputs sit
    x = np.array([np.sin(2 * np.pi * f * t_in + 0.3) for f in freqs])
    y = resample(x.ravel(), fin)
    want = np.array([np.sin(2 * np.pi * f * t_out + 0.3) for f in freqs])
    assert np.abs(y - want).max() < 0.007


@pytest.mark.parametrize("fin", RATES)
def test_dc_passes_exactly_enough(fin):
    y = resample(np.full(need(fin), 0.98), fin)
    assert np.abs(y - 0.98).max() < 1e-6


def test_aliases_are_rejected_when_downsampling():
    """1600 -> 1000 Hz: a tone above 500 Hz would alias into the bands; >= 40 dB down."""
    fin = 1600.0
    t = np.arange(need(fin)) / fin
    for f in range(500, 800, 10):
        for ph in (0.0, 1.0, 2.0):
            y = resample(np.sin(2 * np.pi * f * t + ph), fin)[0]
            assert np.sqrt(np.mean(y ** 2)) / np.sqrt(0.5) < 0.01, f


@pytest.mark.parametrize("fin", (952.0, 800.0))
def test_upsampling_images_stay_small(fin):
    """What is left after fitting the tone itself (images, ripple): >= 55 dB down."""
    t_in = np.arange(need(fin)) / fin
    t_out = (half(fin) + np.arange(256) * fin / 1000.0) / fin
    for f in np.arange(5.0, 0.45 * fin, 11.0):
        y = resample(np.sin(2 * np.pi * f * t_in), fin)[0]
        a = np.stack([np.sin(2 * np.pi * f * t_out), np.cos(2 * np.pi * f * t_out)], 1)
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        assert np.sqrt(np.mean((y - a @ coef) ** 2)) / np.sqrt(0.5) < 10 ** (-55 / 20), f


def tone_windows(n, seed):
    """Machine-like tone mixtures up to 0.38 x 800 Hz; returns (tones, offsets) per window."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tones = [(a, rng.uniform(5, 300), rng.uniform(0.01, 1.0), rng.uniform(0, 6))
                 for a in range(3) for _ in range(rng.integers(1, 4))]
        out.append((tones, (0.0, 0.0, 1.0)))
    return out


def sample(tones, offsets, t):
    w = np.tile(np.asarray(offsets, dtype=float)[:, None], (1, len(t)))
    for a, f, g, ph in tones:
        w[a] += g * np.sin(2 * np.pi * f * t + ph)
    return w


@pytest.mark.parametrize("fin", (952.0, 800.0))
def test_resampled_windows_give_the_1khz_features(fin):
    """The node's chain (sensor rate -> tfn_resample -> tfn_vibration_features) against
    features.py on the same signal sampled at 1 kHz; and the old chain (sensor-rate samples
    taken as 1 kHz) against it, which must be far off."""
    wins = tone_windows(20, seed=5)
    t0 = 0.0123
    raw = np.array([sample(tn, off, t0 + np.arange(need(fin)) / fin) for tn, off in wins], dtype=np.float32)
    res = resample(raw.reshape(-1, need(fin)).ravel(), fin).reshape(len(wins), 3, 256)
    got = np.frombuffer(H.tool("features", "vibration", data=res.astype(np.float32).tobytes()).stdout,
                        dtype=np.float32).reshape(len(wins), F.N_VIBRATION)
    t_out = t0 + (half(fin) + np.arange(256) * fin / 1000.0) / fin
    want = np.array([F.vibration_features(*[list(map(float, a)) for a in sample(tn, off, t_out)])
                     for tn, off in wins])
    naive = np.array([F.vibration_features(*[list(map(float, a)) for a in sample(tn, off, t0 + np.arange(256) / fin)])
                      for tn, off in wins])
    err, old = np.abs(got - want), np.abs(naive - want)
    print("resampled: max %.4f mean %.5f; sensor rate taken as 1 kHz: max %.3f mean %.3f"
          % (err.max(), err.mean(), old.max(), old.mean()))
    assert err.max() < 0.02 and err.mean() < 0.002
    assert old.max() > 0.5 and old.mean() > 20 * err.mean()
