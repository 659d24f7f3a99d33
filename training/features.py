"""numpy twin of node_firmware/micropython/features.py, batched, for training speed.

The device file is the definition; this one must agree with it (tests check it).
"""
import numpy as np

from node_firmware.micropython.features import BANDS, EPS, WINDOW


def vibration_features(windows: np.ndarray) -> np.ndarray:
    """windows [N, WINDOW, 3] (g) -> features [N, 24] float32, axis-major."""
    w = np.asarray(windows, dtype=np.float64)
    if w.ndim != 3 or w.shape[1:] != (WINDOW, 3):
        raise ValueError(f"need windows shaped [N, {WINDOW}, 3], got {list(w.shape)}")
    d = np.transpose(w, (0, 2, 1))
    d = d - d.mean(axis=2, keepdims=True)
    m2 = np.mean(d ** 2, axis=2)
    m4 = np.mean(d ** 4, axis=2)
    rms = np.sqrt(m2)
    peak = np.max(np.abs(d), axis=2)
    mad = np.mean(np.abs(d), axis=2)
    cols = [np.log(rms + EPS), np.log((peak + EPS) / (rms + EPS)),
            np.log((m4 + EPS * EPS) / (m2 * m2 + EPS * EPS)), np.log(mad + EPS)]
    p = np.abs(np.fft.rfft(d, axis=2)) ** 2 / float(WINDOW * WINDOW)
    for lo, hi in BANDS:
        cols.append(0.5 * (np.log(p[:, :, lo:hi].sum(axis=2) + EPS) + 5.0))
    return np.stack(cols, axis=2).reshape(len(w), -1).astype(np.float32)


def weather_features(temp_c, humidity_pct, pressure_hpa, pressure_3h_ago_hpa, hour) -> np.ndarray:
    """Arrays of hourly readings -> features [N, 6] float32."""
    a = 2 * np.pi * (np.asarray(hour) % 24) / 24.0
    p = np.asarray(pressure_hpa, dtype=np.float64)
    return np.stack([(np.asarray(temp_c) - 15.0) / 10.0, (np.asarray(humidity_pct) - 65.0) / 15.0,
                     (p - 1013.0) / 10.0, (p - np.asarray(pressure_3h_ago_hpa)) / 2.0,
                     np.sin(a), np.cos(a)], axis=1).astype(np.float32)
