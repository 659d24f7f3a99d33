"""`tinyfleet bench ingest`: telemetry through a private mosquitto and the gateway into
the cloud store, against the raw broker rate of the C clients in the same run.

Runs, all on loopback, in this order:
  raw      mosquitto_pub -l (QoS 1, one process per node) -> mosquitto_sub -q 1: the ceiling,
           with the same messages (same bytes, same count) as the max run
           (and once with a single mosquitto_pub, the figure in ARCHITECTURE.md)
  max      the same mosquitto_pub input -> N gateway processes ($share) -> cloud store;
           rate = records / (last stored - start)
  paced    paho publishers at a fixed offered rate (default 1,000 msg/s) stamping ts at publish
           time; latency = time the record is seen in the store - ts (node -> stored)
The store is the real cloud (`tinyfleet cloud serve`, SQLite, no retraining worker, drift
rule off so the all-anomaly bench data does not start training jobs) or, with
store="stand-in", tests/gateway/contract_cloud.py. Both are watched the same way: a thread
polls the store's telemetry table every POLL seconds and stamps each new row when it
first sees it (so latencies include up to POLL of observation delay)."""
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from contract import protocol as p
from tinyfleet.broker import Mosquitto, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
SITE = "bench"
TOKEN = "bench-token"
POLL = 0.02
STORES = {
    "real": "tinyfleet cloud serve (FastAPI + SQLAlchemy, SQLite file; --no-worker, drift rule off)",
    "stand-in": "tests/gateway/contract_cloud.py (uvicorn + plain sqlite3; a test stand-in, not the cloud)",
}


def _item(seq: int, ts: int) -> dict:
    return {"seq": seq, "ts": ts, "model": "anomaly", "model_version": 3, "result": 1, "score": 0.82,
            "features": [0.12, 3.4, 1.5, 0.25]}


def _lines(workdir: Path, publishers: int, per_node: int, seq0: int) -> list[Path]:
    """One stdin file per node for mosquitto_pub -l: one telemetry message (1 item) per line."""
    files, ts = [], int(time.time() * 1000)
    for i in range(publishers):
        node = f"sim-{i:03d}"
        f = workdir / f"{node}-{seq0}.txt"
        f.write_bytes(b"".join(p.encode(p.TELEMETRY, p.telemetry(node, [_item(seq0 + s, ts)])) + b"\n"
                               for s in range(per_node)))
        files.append(f)
    return files


def _pub_procs(broker: Mosquitto, files: list[Path], topic_of) -> list[subprocess.Popen]:
    procs = []
    for f in files:
        node = f.name.split("-")[0] + "-" + f.name.split("-")[1]
        procs.append(subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                                       "-i", "pub-" + f.stem, "-t", topic_of(node), "-l"],
                                      stdin=open(f, "rb"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return procs


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (the mosquitto_pub/_sub processes)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def raw_rate(broker: Mosquitto, workdir: Path, publishers: int, per_node: int) -> dict:
    total = publishers * per_node
    files = _lines(workdir, publishers, per_node, 0)
    cpu0 = _children_cpu(), _cpu_seconds(broker.proc.pid)
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                            "-i", "raw-sub", "-t", "raw/#", "-C", str(total)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    t0 = time.monotonic()
    pubs = _pub_procs(broker, files, lambda node: f"raw/{node}/telemetry")
    for proc in pubs:
        proc.wait()
    t_pub = time.monotonic() - t0
    try:
        sub.wait(120)
    except subprocess.TimeoutExpired:
        sub.kill()
        raise RuntimeError("mosquitto_sub did not receive every raw message")
    dt = time.monotonic() - t0
    cpu = {"clients": _children_cpu() - cpu0[0], "mosquitto": _cpu_seconds(broker.proc.pid) - cpu0[1]}
    return {"messages": total, "seconds": round(dt, 3), "msg_per_s": round(total / dt),
            "publish_msg_per_s": round(total / t_pub),
            "cpu_us_per_msg": {k: round(v / total * 1e6, 1) for k, v in cpu.items()}}


class _Store:
    """A cloud process plus a watcher thread that stamps each telemetry row when it appears."""

    def __init__(self, workdir: Path, kind: str):
        self.kind, self.port = kind, free_port()
        self.log = open(workdir / "cloud.log", "wb")
        if kind == "real":
            self.db = workdir / "cloud" / "tinyfleet.db"
            env = {**os.environ, "TINYFLEET_TOKENS": f"gateway:{TOKEN}", "TINYFLEET_DRIFT_ENABLED": "0"}
            cmd = [sys.executable, "-c", "from tinyfleet.cli import main; main()", "cloud", "serve", "--port",
                   str(self.port), "--data", str(workdir / "cloud"), "--no-worker"]
            self.sql = "SELECT id, node, ts FROM telemetry WHERE id > ? ORDER BY id"
        else:
            self.db = workdir / "cloud.sqlite"
            env = dict(os.environ)
            cmd = [sys.executable, str(ROOT / "tests" / "gateway" / "contract_cloud.py"), "--port", str(self.port),
                   "--db", str(self.db), "--token", TOKEN]
            self.sql = "SELECT rowid, node, json_extract(body, '$.ts') FROM telemetry WHERE rowid > ? ORDER BY rowid"
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, 60)
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[tuple[str, int, float]] = []     # (node, ts, first seen)
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._poll, daemon=True)
        self._watch.start()

    def _poll(self) -> None:
        conn, last = sqlite3.connect(str(self.db), timeout=30), 0
        while not self._stop.is_set():
            try:
                rows = conn.execute(self.sql, (last,)).fetchall()
            except sqlite3.OperationalError:       # the table is not there yet
                rows = []
            now = time.time()
            if rows:
                last = rows[-1][0]
                self.seen.extend((node, ts, now) for _, node, ts in rows)
            self._stop.wait(POLL)
        conn.close()

    def stored(self) -> int:
        return len(self.seen)

    def last_stored(self) -> float:
        return self.seen[-1][2]

    def latencies(self, prefix: str) -> list[float]:
        return sorted(at - ts / 1000.0 for node, ts, at in self.seen if node.startswith(prefix))

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def close(self) -> None:
        self._stop.set()
        self._watch.join(5)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _wait_stored(store: _Store, n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.stored() >= n:
            return True
        time.sleep(0.05)
    return False


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children) from /proc: CPU cost, not wall time,
    so the per-message figure holds on a busy machine too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else float("nan")


def paced(broker: Mosquitto, rate: int, seconds: float, publishers: int) -> int:
    """paho publishers at `rate` msg/s in total, 1 item per message, ts stamped at publish."""
    import paho.mqtt.client as mqtt

    sent = [0] * publishers

    def node(i: int) -> None:
        name = f"paced-{i:03d}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        per = rate / publishers
        t0 = time.monotonic()
        k, infos = 0, []
        while time.monotonic() - t0 < seconds:
            payload = p.encode(p.TELEMETRY, p.telemetry(name, [_item(k, int(time.time() * 1000))]))
            infos.append(c.publish(p.topic(SITE, name, p.TELEMETRY), payload, qos=1))
            k += 1
            delay = t0 + k / per - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for info in infos:
            info.wait_for_publish(30)
        sent[i] = k
        c.disconnect()
        c.loop_stop()

    threads = [threading.Thread(target=node, args=(i,)) for i in range(publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(sent)


def _gateway(broker: Mosquitto, store: _Store, work: Path, g: int) -> subprocess.Popen:
    metrics_port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from tinyfleet.cli import main; main()", "gateway", "run",
                             "--broker", broker.url, "--cloud", store.url, "--site", SITE, "--gateway-id", f"gw-bench-{g}",
                             "--share-group", "tf-bench",
                             "--token", TOKEN, "--state-dir", str(work / f"gw{g}"), "--metrics-port", str(metrics_port),
                             "--metrics-host", "127.0.0.1", "--log-level", "WARNING"], cwd=str(ROOT))
    wait_port(metrics_port, 30)
    return proc


def run_bench(rate: int = 1000, seconds: float = 10.0, publishers: int = 10, max_messages: int = 60_000, gateways: int = 1,
              store: str = "real", out: Path | None = ROOT / "bench" / "results" / "ingest.json") -> dict:
    if not shutil.which("mosquitto_pub"):
        raise RuntimeError("mosquitto-clients are not installed")
    if store not in STORES:
        raise ValueError(f"store must be one of {sorted(STORES)}")
    work = Path(tempfile.mkdtemp(prefix="tinyfleet-bench-ingest-"))
    broker = Mosquitto(work / "broker").start()
    cloud = _Store(work, store)
    gws: list[subprocess.Popen] = []
    try:
        per_node = max_messages // publishers
        load_before = os.getloadavg()[0]
        raw = raw_rate(broker, work, publishers, per_node)
        raw_one = raw_rate(broker, work, 1, max_messages)     # one mosquitto_pub: the ARCHITECTURE.md figure

        gws = [_gateway(broker, cloud, work, g) for g in range(gateways)]   # split the site through $share/<group>/...
        time.sleep(1.0)

        # max sustained: the raw run's input, through the gateways into the store
        files = _lines(work, publishers, per_node, 0)
        procs = {"gateway": [g.pid for g in gws], "cloud_store": cloud.pids(),
                 "mosquitto": [broker.proc.pid if broker.proc else 0]}
        cpu0 = {k: sum(_cpu_seconds(x) for x in v) for k, v in procs.items()}
        pubs_cpu0 = _children_cpu()
        t0 = time.time()
        pubs = _pub_procs(broker, files, lambda node: p.topic(SITE, node, p.TELEMETRY))
        for proc in pubs:
            proc.wait()
        t_pub = time.time() - t0
        total = publishers * per_node
        complete = _wait_stored(cloud, total, 300)
        stored = cloud.stored()
        dt = cloud.last_stored() - t0
        cpu = {k: round((sum(_cpu_seconds(x) for x in v) - cpu0[k]) / max(stored, 1) * 1e6, 1)
               for k, v in procs.items()}
        cpu["publishers"] = round((_children_cpu() - pubs_cpu0) / total * 1e6, 1)
        through = {"messages": total, "stored": stored, "complete": complete, "seconds": round(dt, 3),
                   "msg_per_s": round(stored / dt), "publish_msg_per_s": round(total / t_pub),
                   "cpu_us_per_msg": cpu}

        # paced: latency node -> stored at the offered rate
        before = cloud.stored()
        sent = paced(broker, rate, seconds, publishers)
        _wait_stored(cloud, before + sent, 60)
        lat = cloud.latencies("paced-")
        pace = {"offered_msg_per_s": rate, "seconds": seconds, "sent": sent, "stored": cloud.stored() - before,
                "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "max_ms": _pct(lat, 1.0)}
        result = {
            "bench": "ingest", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "publishers": publishers, "gateway_processes": gateways, "qos": 1,
            "payload_bytes": len(files[0].read_bytes().split(b"\n")[0]),
            "raw_broker": raw, "raw_broker_one_publisher": raw_one, "gateway": through, "paced": pace,
            "ratio_to_raw": round(through["msg_per_s"] / raw["msg_per_s"], 3),
            "ratio_to_raw_one_publisher": round(through["msg_per_s"] / raw_one["msg_per_s"], 3),
            # CPU spent per message on the whole raw path / on the whole gateway path: what the rate
            # ratio tends to when the shared machine, not the pipeline, is the limit
            "cpu_ratio": round(sum(raw["cpu_us_per_msg"].values()) / sum(cpu.values()), 3),
            "goals": {"ratio_ge_0.5": through["msg_per_s"] >= 0.5 * raw["msg_per_s"],
                      "p99_le_1s_at_rate": pace["p99_ms"] <= 1000 and pace["stored"] == sent},
            "store": STORES[store], "store_poll_ms": POLL * 1000, "cpus": os.cpu_count(),
            "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],   # other jobs share the machine
        }
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
        return result
    finally:
        for gw in gws:
            gw.terminate()
        for gw in gws:
            try:
                gw.wait(20)
            except subprocess.TimeoutExpired:
                gw.kill()
        cloud.close()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
