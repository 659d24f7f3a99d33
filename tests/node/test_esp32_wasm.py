"""The ESP32 app's inference path and OTA state machine in the real MicroPython
interpreter (WebAssembly build under Node), with an in-memory broker; the script
tests/node/esp32_wasm_check.py does the checks, this test runs it and reads its result."""
import binascii
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import esp32_models as models

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "node_firmware" / "wasm"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_ota_and_inference_under_micropython(tmp_path, blobs):
    v1, v2 = blobs["sine"][1], blobs["sine"][2]
    (tmp_path / "v1").write_bytes(v1)
    (tmp_path / "v2").write_bytes(v2)
    golden = [[binascii.b2a_base64(i).decode().strip(), binascii.b2a_base64(o).decode().strip()]
              for i, o in models.golden(v2)]
    (tmp_path / "g.json").write_text(json.dumps(golden))
    cmd = ["node", str(WASM / "run.mjs"),
           "--mount", "%s:/lib/contract" % (ROOT / "contract"),
           "--mount", "%s:/lib" % (ROOT / "node_firmware" / "esp32" / "lib"),
           "--file", "%s:/lib/features.py" % (ROOT / "node_firmware" / "micropython" / "features.py"),
           "--file", "%s:/lib/tfmicro.py" % (ROOT / "node_firmware" / "micropython" / "tfmicro.py"),
           "--file", "%s:/data/v1" % (tmp_path / "v1"), "--file", "%s:/data/v2" % (tmp_path / "v2"),
           "--file", "%s:/data/g.json" % (tmp_path / "g.json"),
           str(ROOT / "tests" / "node" / "esp32_wasm_check.py"), "/data/v1", "/data/v2", "/data/g.json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=WASM, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["telemetry"] >= 8
    assert out["good"] == ["QUEUED", "DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]
    assert out["bad_crc"] == [["UPDATED", None], 1]
    assert out["bad_sha256"] == ["FAILED", "bad_sha256"]
    assert out["bad_hmac"] == ["FAILED", "bad_hmac"]
    assert out["self_test"] == ["ROLLED_BACK", "self_test"]
    assert out["power_cuts"] >= 40
