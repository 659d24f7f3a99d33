"""Helpers for the gateway tests: the gateway as a real `tinyfleet gateway run` process
(so SIGKILL means SIGKILL), plain paho clients, telemetry builders. (Not in conftest.py:
every test folder has a conftest, so `from conftest import` is ambiguous in one session.)"""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from contract import protocol as p
from tinyfleet.broker import free_port, wait_port

SITE = "site-a"
TOKEN = "gw-token"
TINYFLEET = [str(Path(sys.executable).parent / "tinyfleet")]


class GatewayProc:
    def __init__(self, broker_url: str, cloud_url: str, state_dir: Path, *extra: str):
        self.metrics_port = free_port()
        self.args = TINYFLEET + ["gateway", "run", "--broker", broker_url, "--cloud", cloud_url, "--site", SITE,
                                 "--token", TOKEN, "--state-dir", str(state_dir),
                                 "--metrics-port", str(self.metrics_port), "--metrics-host", "127.0.0.1", *extra]
        self.log = state_dir.parent / (state_dir.name + ".log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "GatewayProc":
        self.proc = subprocess.Popen(self.args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_port(self.metrics_port, 20)
        deadline = time.monotonic() + 20
        while self.metric("tinyfleet_gateway_mqtt_connected") != 1:
            assert time.monotonic() < deadline, "gateway did not connect to the broker:\n" + self.log.read_text()
            time.sleep(0.1)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
                return -9
        return self.proc.returncode

    def metrics(self) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        out = {}
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def metric(self, name: str, **labels) -> float:
        key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        return self.metrics().get(key, 0.0)

    def drops(self) -> dict[str, float]:
        return {re.search(r'reason="([^"]+)"', k).group(1): v for k, v in self.metrics().items()
                if k.startswith("tinyfleet_gateway_dropped_total{")}


def client(port: int, client_id: str, user: str | None = None, password: str | None = None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if user:
        c.username_pw_set(user, password)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def item(seq: int, ts: int | None = None) -> dict:
    return {"seq": seq, "ts": ts if ts is not None else int(time.time() * 1000), "model": "sine",
            "model_version": 1, "result": 0.5, "score": 0.25}


def telemetry_payload(node: str, seqs) -> bytes:
    return p.encode(p.TELEMETRY, p.telemetry(node, [item(s) for s in seqs]))


def wait_for(pred, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


os.environ.setdefault("PYTHONUNBUFFERED", "1")
