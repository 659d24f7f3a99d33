"""Simulated telemetry publishers for the gateway tests: plain paho clients that
publish contract telemetry (1-3 items per message, consecutive seqs) at a steady rate."""
import threading
import time

from gw_harness import SITE, client, item
from contract import protocol as p


class Publishers:
    def __init__(self, port: int, n: int, rate_per_node: float):
        self.port, self.n, self.rate = port, n, rate_per_node
        self.sent: set[tuple[str, int]] = set()        # acknowledged by the broker
        self.attempted: set[tuple[str, int]] = set()   # handed to paho (a broker restart may lose the ack)
        self.messages = 0                                # MQTT messages acknowledged by the broker
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _node(self, i: int, seconds: float) -> None:
        node = f"sim-{i:02d}"
        c = client(self.port, node + "-pub")
        seq, k, t0 = 0, 0, time.monotonic()
        infos = []
        while time.monotonic() - t0 < seconds and not self._stop.is_set():
            count = 1 + k % 3
            seqs = list(range(seq, seq + count))
            infos.append((c.publish(p.topic(SITE, node, p.TELEMETRY),
                                    p.encode(p.TELEMETRY, p.telemetry(node, [item(s) for s in seqs])), qos=1), seqs))
            seq += count
            k += 1
            delay = t0 + k / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for info, seqs in infos:
            with self._lock:
                self.attempted.update((node, s) for s in seqs)
            try:
                info.wait_for_publish(30)
            except RuntimeError:        # published while the broker was down: a real node would retry
                continue
            with self._lock:
                self.sent.update((node, s) for s in seqs)
                self.messages += 1
        c.disconnect()
        c.loop_stop()

    def start(self, seconds: float) -> "Publishers":
        self._threads = [threading.Thread(target=self._node, args=(i, seconds), daemon=True) for i in range(self.n)]
        for t in self._threads:
            t.start()
        return self

    def join(self) -> set[tuple[str, int]]:
        for t in self._threads:
            t.join(120)
        return self.sent


class StatePublishers:
    """Nodes that publish, each at a steady rate, a status (QoS 1, retained), a heartbeat
    (QoS 0) and an OTA state (QoS 1), every one distinct (ts, uptime and progress count up),
    so a record stored twice shows as two equal bodies."""

    def __init__(self, port: int, n: int, rate_per_node: float):
        self.port, self.n, self.rate = port, n, rate_per_node
        self.sent: dict[str, list[dict]] = {"status": [], "heartbeat": [], "ota_state": []}   # broker-acked (QoS 1) or handed over (QoS 0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _node(self, i: int, seconds: float) -> None:
        node = f"st-{i:02d}"
        c = client(self.port, node + "-pub")
        k, t0, infos = 0, time.monotonic(), []
        while time.monotonic() - t0 < seconds:
            ts = 1795400000000 + k
            msgs = [("status", p.STATUS, p.status(node, ("online", "offline")[k % 2], ts), 1, True),
                    ("heartbeat", p.HEARTBEAT, {"v": 1, "node": node, "ts": ts, "fw": "0.1.0", "runtime": 1, "board": "esp32",
                                                "models": {"anomaly": 1}, "free_mem": 50000, "uptime": k}, 0, False),
                    ("ota_state", p.OTA_STATE, p.ota_state(node, "d-1", "anomaly", 2, p.DOWNLOADING, progress=k / 1e6, ts=ts), 1, False)]
            for kind, topic_kind, msg, qos, retain in msgs:
                infos.append((kind, msg, c.publish(p.topic(SITE, node, topic_kind), p.encode(topic_kind, msg), qos=qos, retain=retain)))
            k += 1
            delay = t0 + k / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for kind, msg, info in infos:
            try:
                info.wait_for_publish(30)
            except RuntimeError:
                continue
            with self._lock:
                self.sent[kind].append(msg)
        c.disconnect()
        c.loop_stop()

    def start(self, seconds: float) -> "StatePublishers":
        self._threads = [threading.Thread(target=self._node, args=(i, seconds), daemon=True) for i in range(self.n)]
        for t in self._threads:
            t.start()
        return self

    def join(self) -> dict[str, list[dict]]:
        for t in self._threads:
            t.join(120)
        return self.sent
