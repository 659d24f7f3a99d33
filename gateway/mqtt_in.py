"""Broker side of the gateway: one persistent MQTT session (clean_session False,
QoS 1) on `$share/<group>/...` filters, so several gateway processes can split a
site and nothing is lost while one restarts.

Hot path: the loop thread only reads and frames packets (mqtt_client.FastClient). A
writer thread validates each batch with the contract decoder, drops duplicates
(dedup.py) and commits the batch to the outbox in one transaction (one fsync); the
loop thread then acknowledges those messages to the broker in one write. While one
batch is being committed the next one grows, so batches get larger exactly when the
disk is slow. A gateway crash before the commit means the broker redelivers, never a lost
message; a crash after it, a redelivery the deliveries log recognises. When the broker
goes away instead, what the gateway holds unacked is still stored (see `_hold`)."""
import logging
import queue
import threading
import time
from typing import Callable

import orjson
import paho.mqtt.client as mqtt

from contract import protocol as p
from gateway.config import GatewayConfig
from gateway.dedup import Deliveries, SeqWindow, crc
from gateway.metrics import Metrics
from gateway.mqtt_client import FastClient
from gateway.queue import CHUNK, Outbox

log = logging.getLogger("gateway.mqtt")

LOOP_TIMEOUT = 0.01     # seconds the loop waits for the network before it looks at the writer
DRAIN_READS = 16        # further non-blocking reads per loop pass while the socket has data
MAX_PENDING = 10_000    # messages held while the writer is busy; beyond that the loop stops reading (dedup.KEEP)
OUTBOX_KIND = {p.TELEMETRY: "telemetry", p.HEARTBEAT: "heartbeat", p.STATUS: "status", p.OTA_STATE: "ota_state"}


def filters(cfg: GatewayConfig) -> list[str]:
    """Single-level kinds via '+' (so unknown kinds reach us and are counted as bad_topic),
    plus the two node->gateway OTA kinds. The gateway's own ota/offer and ota/chunk
    traffic is not subscribed to. A plain subscription unless several gateways share the
    site: mosquitto 2.0 restores a persistent session after a crash but not its shared
    subscriptions, so until the gateway subscribes again nothing is queued for it."""
    base = f"{p.ROOT}/{cfg.site}/+/"
    if cfg.share_group:
        base = f"$share/{cfg.share_group}/" + base
    return [base + "+", base + p.OTA_REQUEST, base + p.OTA_STATE]


class MqttIn:
    def __init__(self, cfg: GatewayConfig, outbox: Outbox, metrics: Metrics,
                 on_ota_request: Callable[[dict], None], on_ota_state: Callable[[dict], None],
                 on_stored: Callable[[], None]):
        self.cfg, self.outbox, self.metrics = cfg, outbox, metrics
        self.on_ota_request, self.on_ota_state, self.on_stored = on_ota_request, on_ota_state, on_stored
        self.window = SeqWindow()
        self._topics: dict[bytes, tuple] = {}
        self.connected = False
        self._generation = 0                      # bumps on every (re)connect: stale acks are never sent
        self._session = outbox.session            # broker session the deliveries log refers to
        self._to_writer: queue.Queue = queue.Queue(maxsize=1)
        self._acks: queue.Queue = queue.Queue()   # (generation, [mid]) committed, to be acked
        self._writer_busy = False
        self._held: list[tuple[int, int, list]] = []   # batches of a lost connection, to store unacked
        self._drop_session = False                # set by the writer when the disk failed
        c = self.client = FastClient(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.gateway_id,
                                     clean_session=False, manual_ack=True)
        host, port, user, password = cfg.broker_parts()
        self._addr = (host, port)
        if user:
            c.username_pw_set(user, password)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect

    def _on_connect(self, client, userdata, flags, rc, props=None) -> None:
        if rc.is_failure:
            log.error("broker refused the gateway: %s", rc)
            return
        self.connected = True
        self._generation += 1
        if not flags.session_present:
            self._session = self.outbox.new_session()
        self.metrics.mqtt_connected.set(1)
        # Always: mosquitto 2.0 restores a persistent session after a restart but not its $share
        # subscriptions. The retained statuses this makes it resend are filtered in classify.
        client.subscribe([(f, 1) for f in filters(self.cfg)])
        log.info("connected to %s:%d (session present: %s)", *self._addr, flags.session_present)

    def _on_disconnect(self, client, userdata, flags, rc, props=None) -> None:
        self.connected = False
        self.metrics.mqtt_connected.set(0)
        self._hold()

    def _hold(self) -> None:
        """The connection is gone and these messages were never acked. A broker that crashed
        comes back with its last autosave, so they may exist nowhere else: store them anyway,
        never ack them (a new connection numbers its messages anew), and let dedup recognise
        the copies a broker that did keep them redelivers."""
        if self.client.inbox:
            self._held.append((self._generation, self._session, self.client.inbox))
            self.client.inbox = []

    def run(self, stop) -> None:
        """The loop thread: network I/O, hand-off to the writer, acks, reconnect with back-off."""
        writer = threading.Thread(target=self._writer, name="mqtt-writer", daemon=True)
        writer.start()
        backoff, opened = 0.2, False
        while not stop.is_set():
            if self.client.socket() is None:
                try:
                    if opened:
                        self.client.reconnect()
                    else:
                        self.client.connect(*self._addr, keepalive=30)
                        opened = True
                except OSError as e:
                    log.warning("broker %s:%d unreachable: %s", *self._addr, e)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.cfg.backoff_max)
                    continue
            if len(self.client.inbox) < MAX_PENDING:
                rc = self.client.loop(timeout=LOOP_TIMEOUT)
                for _ in range(DRAIN_READS):
                    n = len(self.client.inbox)
                    if rc != mqtt.MQTT_ERR_SUCCESS or self.client.socket() is None:
                        break
                    rc = self.client.loop_read()
                    if len(self.client.inbox) == n:
                        break
            else:                                    # the writer is behind: let TCP push back on the broker
                time.sleep(LOOP_TIMEOUT)
                rc = self.client.loop_misc()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._hold()
                stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg.backoff_max)
                continue
            if self.connected:
                backoff = 0.2
            self._send_acks()
            if self._drop_session:                  # reconnect so the broker redelivers what we could not store
                self._drop_session = False
                self.client.disconnect()
                continue
            if (self._held or self.client.inbox) and not self._writer_busy:
                self._handoff()
        deadline = time.monotonic() + 10
        while (self._held or self.client.inbox or self._writer_busy) and time.monotonic() < deadline:
            if not self._writer_busy:           # commit what is in hand; ack it while still connected
                self._handoff()
            time.sleep(0.005)
            self._send_acks()
        if self.connected:
            self.client.disconnect()
            self.client.loop(timeout=0.1)
        self._to_writer.put(None)
        writer.join(10)

    def _handoff(self) -> None:
        """Give the writer the oldest held batch, else what the loop read since the last one."""
        if self._held:
            job = self._held.pop(0)
        else:
            job = (self._generation, self._session, self.client.inbox)
            self.client.inbox = []
        self._writer_busy = True
        self._to_writer.put(job)

    def _send_acks(self) -> None:
        while True:
            try:
                generation, mids = self._acks.get_nowait()
            except queue.Empty:
                return
            if generation == self._generation and self.connected:
                self.client.ack_many(mids)

    def _writer(self) -> None:
        while True:
            job = self._to_writer.get()
            if job is None:
                return
            generation, session, batch = job
            try:
                if self.flush(batch, session):
                    self._acks.put((generation, [m[2] for m in batch if m[3]]))
            except Exception:  # noqa: BLE001 - a bug here must not stop ingestion: no ack, redelivery
                log.exception("batch of %d messages failed; the broker will redeliver", len(batch))
                self.window.clear()
                self._drop_session = True
            finally:
                self._writer_busy = False

    def flush(self, batch: list, session: int = 0) -> bool:
        """Validate and commit one batch; True when it is on disk (and may be acked)."""
        rows, delivered, statuses, counts = self.classify(batch, session)
        try:
            stored, full = self.outbox.put(rows, session, Deliveries.pack(delivered), statuses)
        except Exception:  # noqa: BLE001 - disk trouble: no ack; the broker redelivers
            log.exception("outbox write failed; the broker will redeliver")
            self.metrics.cloud_errors.labels("outbox").inc()
            self.window.clear()       # it remembered seqs that are not stored
            self._drop_session = True
            time.sleep(1.0)
            return False
        for kind, n in counts["kinds"].items():
            self.metrics.messages_in.labels(kind).inc(n)
        if counts["duplicates"]:
            self.metrics.duplicates.inc(counts["duplicates"])
        if counts["redelivered"]:
            self.metrics.redelivered.inc(counts["redelivered"])
        for reason, n in counts["dropped"].items():
            self.metrics.drop(reason, n)
        if full:
            self.metrics.drop("queue_full", full)
        self.metrics.queue_depth.set(self.outbox.depth)
        self.metrics.queue_bytes.set(self.outbox.bytes)
        if stored:
            self.on_stored()
        return True

    def _where(self, topic: bytes) -> tuple:
        """(node, kind) of a topic, or (reason,) for a bad one; cached because topics repeat."""
        hit = self._topics.get(topic)
        if hit is None:
            try:
                site, node, kind = p.parse_topic(topic.decode())
                hit = (node, kind) if site == self.cfg.site else ("bad_topic",)
                if kind in p.CLOUD_TO_NODE:
                    hit = ("bad_topic",)      # a gateway-to-node kind from a node
            except UnicodeDecodeError:
                hit = ("bad_topic",)
            except p.ContractError as e:
                hit = (e.reason,)
            if len(self._topics) > 100_000:
                self._topics.clear()
            self._topics[topic] = hit
        return hit

    def classify(self, batch: list, session: int = 0) -> tuple[list, list, dict, dict]:
        """Validates a batch of (topic, payload, mid, qos, dup, retain). Returns the outbox rows,
        the (mid, crc) of its QoS 1 messages, {status topic: crc} of the statuses it forwards,
        and counts: valid messages per kind, duplicate telemetry items, redeliveries of stored
        messages, drops per contract reason (or spoofed_node). Bad messages are dropped, never
        raised. A retained status (sent because we subscribed) that equals the last status
        forwarded from its topic is a redelivery too."""
        deliveries, window, where_of = self.outbox.deliveries, self.window, self._where
        telemetry: list[dict] = []
        rows: list[tuple[str, int, bytes]] = []
        delivered: list[tuple[int, int]] = []
        statuses: dict[bytes, int] = {}
        kinds: dict[str, int] = {}
        dropped: dict[str, int] = {}
        dups = redelivered = 0
        for topic, payload, mid, qos, dup, retain in batch:
            digest = crc(topic, payload) if qos or retain else 0
            if qos:
                if dup and deliveries.committed(session, mid, digest):
                    redelivered += 1          # stored before a crash took its PUBACK
                    continue
                delivered.append((mid, digest))
            where = where_of(topic)
            if len(where) == 1:
                dropped[where[0]] = dropped.get(where[0], 0) + 1
                continue
            node, kind = where
            if kind == p.STATUS:
                if retain and statuses.get(topic, self.outbox.statuses.get(topic)) == digest:
                    redelivered += 1
                    continue
                digest = digest or crc(topic, payload)
            try:
                msg = p.decode(kind, payload)
            except p.ContractError as e:
                dropped[e.reason] = dropped.get(e.reason, 0) + 1
                continue
            if msg["node"] != node:
                dropped["spoofed_node"] = dropped.get("spoofed_node", 0) + 1
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == p.TELEMETRY:
                for item in msg["items"]:
                    if window.add(node, item["seq"]):
                        item["node"] = node       # a flat record: the item plus its node
                        telemetry.append(item)
                    else:
                        dups += 1
            elif kind == p.OTA_REQUEST:
                self.on_ota_request(msg)
            else:
                if kind == p.OTA_STATE:
                    self.on_ota_state(msg)
                elif kind == p.STATUS:
                    statuses[topic] = digest
                rows.append((OUTBOX_KIND[kind], 1, bytes(payload)))
        for i in range(0, len(telemetry), CHUNK):
            part = telemetry[i:i + CHUNK]
            rows.append(("telemetry", len(part), orjson.dumps(part)[1:-1]))
        return rows, delivered, statuses, {"kinds": kinds, "duplicates": dups, "redelivered": redelivered,
                                           "dropped": dropped}
