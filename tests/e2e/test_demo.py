"""`tinyfleet demo --headless` is the end-to-end test of the whole loop: real mosquitto,
cloud, gateways and simulated nodes running the real firmware; a field change, a
retraining job, a canary-first OTA and the false-alarm rate falling."""
import os
import signal
import subprocess
import sys
import time
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


def _started_by(work: Path, but: int) -> list[int]:
    """Processes whose command line names the demo's work folder (its services), `but` aside."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(work).encode() in cmd and int(pid) != but:
            pids.append(int(pid))
    return pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_demo_and_everything_it_started(tmp_path, sig):
    """The services run in process groups of their own, so the demo must stop them: on
    SIGTERM (kill, a service manager) and on SIGINT even when the demo inherited it ignored
    (what a shell does to a command it starts in the background)."""
    work = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "tinyfleet", "demo", "--port", "0", "--workdir", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "waiting for:" in line:          # the story loop is running
                break
        assert seen and "waiting for:" in seen[-1], "".join(seen)
        services = _started_by(work, proc.pid)
        assert len(services) >= 6, services       # mosquitto, cloud, 2 gateways, 2 node simulators
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0 and "stopping" in rest, rest[-2000:]
        deadline = time.monotonic() + 10
        while _started_by(work, proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _started_by(work, proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _started_by(work, proc.pid):
            os.kill(pid, signal.SIGKILL)
