"""`tinyfleet bench scale`: how many simulated nodes this machine holds at 1 msg/s each
with p99 node -> stored latency <= 1 s. Everything runs here at once: a private
mosquitto, the cloud (SQLite), one gateway and the simulated fleet (the real ESP32
app, stepped by threads of this process). The fleet grows level by level; at each
level the bench measures for a window:

- offered: telemetry messages the nodes published per second (one result each);
- stored: records the cloud stored per second (its ingest counter);
- latency: when the cloud's live feed (`/api/v1/stream`, polled every 50 ms) shows a
  record, minus the node's timestamp of it: node -> stored -> visible, an upper bound;
- CPU seconds per second of each process, to show which tier runs out first.

A level is held when stored >= 95% of the nodes' 1 msg/s, p99 <= 1 s, and the
simulator kept its schedule (otherwise the simulator, not the system, was measured)."""
import json
import os
import shutil
import threading
import time
from pathlib import Path

import httpx

SITE = "scale"
TICK_HZ = os.sysconf("SC_CLK_TCK")


class Feed:
    """Reads the cloud's live feed in a thread; keeps (seen at, latency) per record."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.seen: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def start(self) -> "Feed":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with httpx.stream("GET", self.url + "/api/v1/stream", params={"token": self.token},
                                  timeout=httpx.Timeout(30.0, connect=5.0)) as r:
                    event = ""
                    for line in r.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event == "telemetry":
                            now = time.time()
                            for rec in json.loads(line[5:])["records"]:
                                self.seen.append((now, now - rec["ts"] / 1000.0))
            except (httpx.HTTPError, ValueError, KeyError):
                self._stop.wait(0.5)

    def latencies(self, t0: float, t1: float) -> list[float]:
        return sorted(lat for at, lat in list(self.seen) if t0 <= at < t1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / TICK_HZ


def pct(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None


def run(levels=(500, 1000, 1500, 2000, 2500, 3000), seconds: float = 20.0, models=("sine",),
        threads: int | None = None, echo=print) -> dict:
    from node_firmware.sim import fleet
    from tinyfleet.bench_ota import _raise_fd_limit, sim_root
    from tinyfleet.stack import Stack

    _raise_fd_limit()
    work = Path("var/bench/scale")
    shutil.rmtree(work, ignore_errors=True)
    stack = Stack(work, SITE, cloud_env={"TINYFLEET_SSE_POLL_S": "0.05"})
    root = sim_root("bench-scale")
    nodes, stepper, rows = [], None, []
    try:
        stack.start()
        feed = Feed(stack.url, stack.tokens["operator"]).start()
        procs = {"simulator": os.getpid(), "broker": stack.broker.proc.pid,
                 "gateway": stack.gateway.proc.pid, "cloud": stack.cloud.proc.pid}
        for level in levels:
            if stepper is not None:
                stepper.stop(shutdown=False)
            nodes += fleet.make_nodes(level - len(nodes), SITE, stack.broker.url, list(models), "models", stack.key,
                                      root, sample_ms=1000, prefix=f"L{level}-",
                                      batch=1, batch_ms=1)
            stepper = fleet.Stepper(nodes, threads or fleet.DEFAULT_THREADS).start()
            deadline = time.monotonic() + 30 + level * 0.05
            while sum(n.node.connected for n in nodes) < level and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(5.0)   # warm-up: batches and the cloud catch up with the new nodes
            inf0 = sum(n.node.inferences for n in nodes)
            stored0 = stack.cloud_metric('tinyfleet_ingest_records_total{kind="telemetry"}')
            cpu0 = {k: cpu_seconds(p) for k, p in procs.items()}
            b0 = [stack.cloud_metric("tinyfleet_ingest_batch_seconds_" + k) for k in ("sum", "count")]
            t0 = time.time()
            time.sleep(seconds)
            t1 = time.time()
            offered = (sum(n.node.inferences for n in nodes) - inf0) / (t1 - t0)
            stored = (stack.cloud_metric('tinyfleet_ingest_records_total{kind="telemetry"}') - stored0) / (t1 - t0)
            lat = feed.latencies(t0, t1)
            b1 = [stack.cloud_metric("tinyfleet_ingest_batch_seconds_" + k) for k in ("sum", "count")]
            batches = max(1.0, b1[1] - b0[1])
            row = {"nodes": level, "connected": sum(n.node.connected for n in nodes),
                   "offered_msgs_per_s": round(offered, 1), "stored_per_s": round(stored, 1),
                   "latency_p50_s": pct(lat, 0.50), "latency_p99_s": pct(lat, 0.99),
                   "latency_samples": len(lat),
                   "cloud_batches_per_s": round(batches / (t1 - t0), 1),
                   "cloud_ms_per_batch": round(1000 * (b1[0] - b0[0]) / batches, 1),
                   "cpu_s_per_s": {k: round((cpu_seconds(p) - cpu0[k]) / (t1 - t0), 2) for k, p in procs.items()},
                   "sim_kept_schedule": offered >= 0.95 * level}
            row["held"] = bool(row["sim_kept_schedule"] and stored >= 0.95 * level
                               and row["latency_p99_s"] is not None and row["latency_p99_s"] <= 1.0)
            echo(json.dumps(row))
            rows.append(row)
            if not row["held"]:
                break
        feed.stop()
    finally:
        if stepper is not None:
            stepper.stop()
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    held = [r["nodes"] for r in rows if r["held"]]
    last = rows[-1] if rows else {}
    limit = ("simulator" if last and not last["sim_kept_schedule"] else
             "system" if last and not last["held"] else "not reached: add levels")
    result = {"bench": "scale", "models": list(models), "seconds_per_level": seconds,
              "cores": os.cpu_count(), "levels": rows, "nodes_held": max(held, default=0),
              "limited_by": limit}
    out = Path("bench/results/scale.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result
