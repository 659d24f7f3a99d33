"""`tinyfleet cloud serve` (dev tokens, worker process) and the `tinyfleet ota` client."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cloud_msgs import batch, heartbeat

TINYFLEET = [sys.executable, "-c", "from tinyfleet.cli import main; main()"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_serve_prints_dev_tokens_spawns_worker_and_ota_cli_works(db_url, tmp_path, model_root):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYFLEET_")}
    env["TINYFLEET_TRAINER"] = "cloud_no_such_trainer:train"       # jobs fail fast: shows the worker runs them
    proc = subprocess.Popen(TINYFLEET + ["cloud", "serve", "--port", str(port), "--db", db_url,
                                         "--data", str(tmp_path / "data"), "--models", str(model_root)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    lines = []
    try:
        deadline = time.time() + 60
        while True:
            assert time.time() < deadline, "".join(lines)
            lines.append(proc.stdout.readline())
            if "tinyfleet cloud on" in lines[-1]:
                break
        tokens = dict(re.findall(r"^\s+(viewer|operator|gateway)\s+(\S+)$", "".join(lines), re.M))
        assert set(tokens) == {"viewer", "operator", "gateway"}
        assert (Path(tmp_path / "data" / "tokens.env")).read_text().startswith("TINYFLEET_TOKENS=")
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.time() < deadline
                time.sleep(0.2)
        gw = {"Authorization": f"Bearer {tokens['gateway']}"}
        op = {"Authorization": f"Bearer {tokens['operator']}"}
        assert httpx.post(url + "/api/v1/ingest", headers=gw,
                          json=batch(heartbeats=[heartbeat("n-1"), heartbeat("n-2")])).status_code == 200
        job = httpx.post(url + "/api/v1/jobs", headers=op, json={"model": "sine"}).json()
        while (j := httpx.get(url + f"/api/v1/jobs/{job['id']}", headers=op).json())["status"] in ("queued", "running"):
            assert time.time() < deadline + 30, j
            time.sleep(0.2)
        assert j["status"] == "failed" and "cloud_no_such_trainer" in j["error"]

        def ota(*args, ok=True):
            r = subprocess.run(TINYFLEET + ["ota", *args, "--cloud", url, "--token", tokens["operator"]],
                               env=env, capture_output=True, text=True, timeout=60)
            assert (r.returncode == 0) == ok, r.stdout + r.stderr
            return r.stdout + r.stderr

        out = ota("deploy", "sine", "2", "--site", "plant-a", "--canary", "1", "--wave-size", "1", "--interval", "60")
        dep_id = re.search(r"deployment (d-[0-9a-f]+): 2 nodes in 2 waves, running", out).group(1)
        assert dep_id in ota("status")
        assert '"state": "QUEUED"' in ota("status", dep_id)
        assert "paused" in ota("pause", dep_id)
        assert "409" in ota("pause", dep_id, ok=False)
        assert "running" in ota("resume", dep_id)
        assert "aborted" in ota("abort", dep_id)
        assert "404" in ota("status", "d-nope", ok=False)
        assert "422" in ota("deploy", "sine", "2", "--node", "ghost", ok=False)
        r = subprocess.run(TINYFLEET + ["ota", "status", "--cloud", url, "--token", "wrong"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "401" in r.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
