"""What the dashboard browser tests run against: the real cloud as a subprocess
(`python -m tinyfleet cloud serve`), committed-style model folders made from the
repository's test models, a gateway that posts through the real ingest API, and
Debian's headless Chromium driven by Selenium."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"viewer": "dash-viewer", "operator": "dash-operator", "gateway": "dash-gateway"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report_plot(path: Path, title: str, threshold: float | None = None) -> None:
    """A real report PNG (matplotlib, like training/report.py writes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    xs = [i / 50 * 2 * math.pi for i in range(51)]
    ax.plot(xs, [math.sin(x) for x in xs], label="truth")
    ax.plot(xs, [math.sin(x) * 0.97 + 0.02 for x in xs], ".", label="int8")
    if threshold is not None:
        ax.axhline(threshold, color="red", linestyle="--", label="threshold")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def make_models(root: Path) -> Path:
    """models/sine/{1,2,3} and models/anomaly/1: int8.tflite, model.tfmb (the real
    converter), report.json (metrics; the anomaly one has its threshold) and result.png."""
    from training import testmodels
    from training.export import make_blob
    specs = [("sine", 1, "dense_sine"), ("sine", 2, "dense_sine_pt"), ("sine", 3, "dense_sine"),
             ("anomaly", 1, "autoencoder")]
    for name, version, src in specs:
        folder = root / name / str(version)
        folder.mkdir(parents=True)
        tfl = testmodels.get(src)     # built and cached on first use
        (folder / "int8.tflite").write_bytes(tfl)
        (folder / "model.tfmb").write_bytes(make_blob(tfl, name, version))
        threshold = 0.05 if name == "anomaly" else None
        metrics = {"int8_auc_seen": 0.97} if name == "anomaly" else {"int8_mae_clean_grid": 0.05 + version / 100}
        (folder / "report.json").write_text(json.dumps({"name": name, "version": version, "data": "generated",
                                                        "metrics": metrics, "threshold": threshold}))
        report_plot(folder / "result.png", f"{name} v{version}", threshold)
    return root


class CloudProcess:
    """`tinyfleet cloud serve` in a subprocess; `url`, `post`/`get` with a role's token."""

    def __init__(self, tmp: Path, models: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "cloud.log"
        env = {**os.environ, "TINYFLEET_TOKENS": ",".join(f"{r}:{t}" for r, t in TOKENS.items()),
               "TINYFLEET_ENGINE_TICK_S": "0.1", "TINYFLEET_SSE_POLL_S": "0.1", "TINYFLEET_DRIFT_ENABLED": "0",
               "TINYFLEET_FLEET_KEY": "33" * 32, "TINYFLEET_GOLDEN_COUNT": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("TINYFLEET_DB_URL", None)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinyfleet", "cloud", "serve", "--port", str(self.port),
             "--db", f"sqlite:///{tmp / 'c.db'}", "--data", str(tmp / "data"), "--models", str(models),
             "--no-worker"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.gateways: dict[str, Gateway] = {}      # site -> the Gateway a test plays there
        deadline = time.time() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cloud exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"cloud did not become ready:\n{self.log_text()}")
            time.sleep(0.2)

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def get(self, path: str, role: str = "viewer", **kw) -> httpx.Response:
        return self.client.get(path, headers={"Authorization": f"Bearer {TOKENS[role]}"}, **kw)

    def post(self, path: str, role: str = "operator", **kw) -> httpx.Response:
        return self.client.post(path, headers={"Authorization": f"Bearer {TOKENS[role]}"}, **kw)

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class Gateway:
    """Plays gateway gw-1 of site plant-a through POST /api/v1/ingest."""

    def __init__(self, cloud: CloudProcess, site: str = "plant-a", gateway: str = "gw-1"):
        self.cloud, self.site, self.gateway = cloud, site, gateway
        self.batches = 0
        self.seq: dict[str, int] = {}

    def send(self, **lists) -> dict:
        from contract import protocol
        self.batches += 1
        body = protocol.ingest_batch(self.gateway, self.site, f"{self.gateway}-{os.getpid()}-{self.batches:06d}", **lists)
        r = self.cloud.post("/api/v1/ingest", role="gateway", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    @staticmethod
    def heartbeat(node: str, models: dict) -> dict:
        return {"v": 1, "node": node, "ts": int(time.time() * 1000), "fw": "0.1.0", "runtime": 1, "board": "esp32",
                "models": models, "free_mem": 61234, "uptime": 3600}

    def record(self, node: str, model: str, version: int, result, score: float, features=None) -> dict:
        self.seq[node] = self.seq.get(node, 0) + 1
        rec = {"node": node, "seq": self.seq[node], "ts": int(time.time() * 1000), "model": model,
               "model_version": version, "result": result, "score": score}
        if features is not None:
            rec["features"] = features
        return rec

    def sine(self, node: str, x: float) -> dict:
        return self.record(node, "sine", 3, round(math.sin(x) * 0.96 + 0.01, 5), 0.02, [round(x, 4)])

    def ota(self, node: str, deployment: str, model: str, version: int, state: str) -> dict:
        return {"v": 1, "node": node, "deployment": deployment, "model": model, "version": version, "state": state}


def chromium(user_data_dir: Path, width: int = 1400, height: int = 2200):
    """Debian's chromium, headless, through the system chromedriver (no downloads)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver
