"""`tinyfleet demo --headless` is the end-to-end test of the whole loop: real mosquitto,
cloud, gateways and simulated nodes running the real firmware; a field change, a
retraining job, a canary-first OTA and the false-alarm rate falling."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_headless_demo_completes_the_story(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tinyfleet", "demo", "--headless", "--duration", "300",
                          "--port", "0", "--workdir", str(tmp_path / "demo")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    for line in ["every node online", "field change on site-a", "cloud retrained the anomaly model",
                 "deployed it canary-first", "reported UPDATED", "false-alarm rate on the new model"]:
        assert line in text, f"missing story step {line!r}:\n{text[-4000:]}"
