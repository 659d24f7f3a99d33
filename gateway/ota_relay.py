"""OTA relay: follows the cloud's deployment events (SSE, resumed with Last-Event-ID),
fetches each model blob once and caches it on disk by sha256, publishes the retained
signed offer on every target node's ota/offer, and answers chunk-window requests
with binary ota/chunk frames at a bounded rate. Node ota/state messages travel
upstream through the outbox like any other record (see mqtt_in)."""
import hashlib
import json
import logging
import queue
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from contract import protocol as p
from gateway.config import GatewayConfig
from gateway.metrics import Metrics

log = logging.getLogger("gateway.ota")
MAX_BACKLOG = 20_000     # chunk requests waiting for the rate limiter; beyond that, dropped and counted
MAX_EVENT_TRIES = 3      # a deployment event that keeps failing is skipped after this many tries


class OtaRelay:
    def __init__(self, cfg: GatewayConfig, metrics: Metrics):
        self.cfg, self.metrics = cfg, metrics
        self.dir = cfg.state_dir / "ota"
        (self.dir / "blobs").mkdir(parents=True, exist_ok=True)
        self._deployments_file = self.dir / "deployments.json"
        self._last_id_file = self.dir / "last_event_id"
        # deployment id -> node id -> {"sha256", "size", "chunk_size"}: per node, because one deployment
        # sends several waves, and a rollback wave ships another blob under the same deployment id
        self.deployments: dict[str, dict[str, dict]] = self._load_json(self._deployments_file, {})
        self.last_event_id = self._last_id_file.read_text().strip() if self._last_id_file.exists() else ""
        self.blobs: dict[str, bytes] = {}
        self.states: dict[str, dict[str, str]] = {}   # deployment -> node -> last state
        self._requests: queue.Queue = queue.Queue(MAX_BACKLOG)
        self._queued: set[tuple[str, str, int]] = set()   # (node, sha256, index) in _requests
        self._tries: dict[str, int] = {}
        headers = {"Authorization": "Bearer " + cfg.token} if cfg.token else {}
        self.http = httpx.Client(base_url=cfg.cloud, headers=headers, timeout=httpx.Timeout(30.0, connect=3.0))
        host, port, user, password = cfg.broker_parts()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.gateway_id + "-ota")
        if user:
            self.mqtt.username_pw_set(user, password)
        self.mqtt.max_queued_messages_set(0)
        self.mqtt.connect_async(host, port, keepalive=30)

    @staticmethod
    def _load_json(path: Path, default):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return default

    def _save(self) -> None:
        tmp = self._deployments_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.deployments))
        tmp.replace(self._deployments_file)
        tmp = self._last_id_file.with_suffix(".tmp")
        tmp.write_text(self.last_event_id)
        tmp.replace(self._last_id_file)

    # ------------------------------------------------------------ threads

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        self.mqtt.loop_start()
        threads = [threading.Thread(target=self._events_loop, args=(stop,), name="ota-events", daemon=True),
                   threading.Thread(target=self._chunk_loop, args=(stop,), name="ota-chunks", daemon=True)]
        for t in threads:
            t.start()
        return threads

    def close(self) -> None:
        self.mqtt.loop_stop()
        self.mqtt.disconnect()

    def _events_loop(self, stop: threading.Event) -> None:
        backoff = 0.2
        path = p.EVENTS_PATH.format(gateway=self.cfg.gateway_id)
        while not stop.is_set():
            headers = {"Accept": "text/event-stream"}
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            try:
                with self.http.stream("GET", path, headers=headers,
                                      timeout=httpx.Timeout(60.0, connect=3.0)) as r:
                    if r.status_code != 200:
                        raise httpx.HTTPStatusError(f"events: HTTP {r.status_code}", request=r.request, response=r)
                    backoff = 0.2
                    self._read_events(r, stop)
            except (httpx.HTTPError, OSError) as e:
                self.metrics.cloud_errors.labels("events").inc()
                log.warning("deployment events: %s", e)
            stop.wait(backoff)
            backoff = min(backoff * 2, self.cfg.backoff_max)

    def _read_events(self, r: httpx.Response, stop: threading.Event) -> None:
        event, eid = "message", None
        data: list[str] = []
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line == "":
                if data:
                    self._dispatch(eid, event, "\n".join(data))
                event, data, eid = "message", [], None
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    eid = value

    def _dispatch(self, eid: str | None, event: str, data: str) -> None:
        try:
            doc = json.loads(data)
            if event == "deployment":
                self.deploy(doc)
            elif event == "cancel":
                self.cancel(doc)
        except Exception as e:  # noqa: BLE001 - one bad event must not stop the relay
            key = eid or data[:64]
            self._tries[key] = self._tries.get(key, 0) + 1
            log.error("deployment event %s failed (%d/%d): %s", eid, self._tries[key], MAX_EVENT_TRIES, e)
            if self._tries[key] < MAX_EVENT_TRIES:
                raise httpx.TransportError("retry event") from e   # reconnect and get it again
            self.metrics.drop("bad_event")
        if eid is not None:
            self.last_event_id = eid
            self._save()

    # ------------------------------------------------------------ deployments

    def blob(self, sha256: str, url: str | None = None) -> bytes:
        """The blob, from memory, the disk cache, or (once) the cloud."""
        if sha256 in self.blobs:
            return self.blobs[sha256]
        path = self.dir / "blobs" / sha256
        if path.exists():
            data = path.read_bytes()
        else:
            r = self.http.get(url or p.BLOB_PATH.format(sha256=sha256))
            r.raise_for_status()
            data = r.content
            self.metrics.blob_downloads.inc()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise ValueError(f"blob {sha256[:12]} from the cloud fails its sha256")
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        self.blobs[sha256] = data
        return data

    def deploy(self, doc: dict) -> None:
        """event: deployment -> cache the blob, publish a retained offer to each target node."""
        manifest = p.validate(p.OTA_OFFER, doc["manifest"])
        if manifest["chunk_size"] > p.MAX_CHUNK_DATA:
            raise ValueError(f"chunk_size {manifest['chunk_size']} exceeds {p.MAX_CHUNK_DATA}")
        self.blob(manifest["sha256"], doc.get("blob_url"))
        per_node = doc.get("node_manifests") or {}
        dep = self.deployments.setdefault(doc["deployment"], {})
        for node in doc["nodes"]:
            m = p.validate(p.OTA_OFFER, per_node.get(node, manifest))
            if m["sha256"] != manifest["sha256"]:
                raise ValueError(f"node {node}'s manifest names another blob than the deployment's")
            # known before the offer leaves: the node's first chunk request can beat the next line
            dep[node] = {"sha256": m["sha256"], "size": m["size"], "chunk_size": m["chunk_size"]}
            self.states.setdefault(doc["deployment"], {})[node] = p.QUEUED
            self.mqtt.publish(p.topic(self.cfg.site, node, p.OTA_OFFER), p.encode(p.OTA_OFFER, m), qos=1, retain=True)
        self._save()
        self._gauge(doc["deployment"])
        log.info("deployment %s: offered %s v%s to %d nodes", doc["deployment"], manifest["model"],
                 manifest["version"], len(doc["nodes"]))

    def cancel(self, doc: dict) -> None:
        """event: cancel -> clear the retained offers; stop serving chunks to those nodes."""
        dep = self.deployments.get(doc["deployment"], {})
        nodes = doc.get("nodes") or list(dep)
        for node in nodes:
            self.mqtt.publish(p.topic(self.cfg.site, node, p.OTA_OFFER), b"", qos=1, retain=True)
            dep.pop(node, None)
        if not dep:
            self.deployments.pop(doc["deployment"], None)
        self._save()
        log.info("deployment %s cancelled for %d nodes", doc["deployment"], len(nodes))

    # ------------------------------------------------------------ node side

    def on_request(self, msg: dict) -> None:
        """ota/request from a node (called on the MQTT loop thread: must not block)."""
        blob = self.deployments.get(msg["deployment"], {}).get(msg["node"])
        if blob is None:
            self.metrics.drop("unknown_deployment")
            return
        n = p.chunk_count(blob["size"], blob["chunk_size"])
        for index in range(msg["index"], min(n, msg["index"] + msg["count"])):
            key = (msg["node"], blob["sha256"], index)
            if key in self._queued:   # a node that timed out while its chunk waits in the backlog
                continue
            try:
                self._requests.put_nowait((msg["node"], blob, index))
                self._queued.add(key)
            except queue.Full:
                self.metrics.drop("ota_backlog")

    def on_state(self, msg: dict) -> None:
        self.states.setdefault(msg["deployment"], {})[msg["node"]] = msg["state"]
        self._gauge(msg["deployment"])

    def _gauge(self, deployment: str) -> None:
        counts = {s: 0 for s in p.OTA_STATES}
        for state in self.states.get(deployment, {}).values():
            counts[state] = counts.get(state, 0) + 1
        for state, n in counts.items():
            self.metrics.ota_nodes.labels(deployment, state).set(n)

    def _chunk_loop(self, stop: threading.Event) -> None:
        """Token bucket: at most ota_chunk_rate chunks per second over all nodes."""
        interval = 1.0 / self.cfg.ota_chunk_rate
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                node, blob, index = self._requests.get(timeout=0.2)
            except queue.Empty:
                continue
            self._queued.discard((node, blob["sha256"], index))
            try:
                data = self.blob(blob["sha256"])
            except Exception as e:  # noqa: BLE001 - cloud unreachable and no cache: the node re-requests
                log.warning("blob %s unavailable: %s", blob["sha256"][:12], e)
                stop.wait(1.0)
                continue
            cs = blob["chunk_size"]
            frame = p.encode_chunk(blob["sha256"], index, data[index * cs:(index + 1) * cs])
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            next_at = max(next_at, now) + interval
            self.mqtt.publish(p.topic(self.cfg.site, node, p.OTA_CHUNK), frame, qos=1)
            self.metrics.ota_chunks.inc()
