"""The node loop: sensor -> features -> int8 inference -> telemetry over MQTT
(QoS 1, per-node sequence numbers that survive reboots, batches), heartbeat,
retained status with an `offline` will, a bounded ring while the broker is away,
reconnect with exponential back-off, and the OTA client.

`Node.step()` does one pass and never blocks for long, so a simulator can step
many nodes in one process; on the device `run()` calls it forever."""
from contract import protocol as P

from . import FW_VERSION
from . import config as configmod
from .inference import Inference, InferenceError
from .ota import Ota
from .sensors import make_source
from .slots import Slots

SEQ_BLOCK = 64      # sequence numbers reserved per flash write
OUTBOX_MAX = 64     # control messages (OTA states, requests) kept while offline
INBOX_MAX = 96      # messages taken off the socket, handled outside the MQTT client


class Seq:
    """Strictly increasing across reboots: reserve blocks on flash, skip the unused rest."""

    def __init__(self, fs, path):
        self.fs = fs
        self.path = path
        st = fs.read_json(path)
        self.reserved = st.get("reserved", 0) if isinstance(st, dict) else 0
        self.value = self.reserved

    def next(self):
        if self.value >= self.reserved:
            self.reserved = self.value + SEQ_BLOCK
            self.fs.write_json(self.path, {"reserved": self.reserved})
        v = self.value
        self.value += 1
        return v


class Node:
    def __init__(self, hal, config_path="/config.json"):
        self.hal = hal
        self.fs = hal.fs
        self.cfg = configmod.load(self.fs, config_path)
        cfg = self.cfg
        self.node_id = cfg["node_id"]
        self.host, self.port = configmod.parse_broker(cfg["broker"])
        self.fs.makedirs(cfg["state_dir"])
        for p in cfg["slots"] + [cfg["active_pointer"]]:
            self.fs.makedirs(p[:p.rfind("/")])
        self.seq = Seq(self.fs, cfg["state_dir"] + "/seq.json")
        self.slots = Slots(self.fs, cfg["slots"], cfg["active_pointer"])
        data, hdr, event = self.slots.boot(cfg["model"], hal.power_lost())
        self.boot_event = event
        self.model = None
        self.model_version = 0
        self.use_model(data, self.slots.version())
        self.source = make_source(cfg["sensor"], hal, cfg)
        self.client = None
        self.connected = False
        self.ring = []
        self.dropped = 0
        self.outbox = []
        self.inbox = []
        self.backoff = cfg["backoff_min_ms"]
        now = hal.ticks_ms()
        self.next_connect = now
        self.next_sample = now
        self.last_sample = now
        self.next_heartbeat = now
        self.last_ping = now
        self.inferences = 0
        self.inference_errors = 0
        self.connects = 0
        self.ota = Ota(self)
        self.ota.resume(event)

    # ------------------------------------------------------------ models
    def use_model(self, blob, version):
        """Load `blob` as the running model (raises if the runtime refuses it)."""
        cfg = self.cfg
        inf = Inference(self.hal, blob, cfg["ram_budget"], cfg["task"], cfg["classes"], cfg["threshold"])
        self.model = inf
        self.model_version = version
        return inf

    def reload_active(self):
        got = self.slots.check(self.slots.active(), self.cfg["model"])
        if got is not None:
            self.use_model(got[0], self.slots.version())

    # ------------------------------------------------------------ MQTT
    def topic(self, kind):
        return P.topic(self.cfg["site"], self.node_id, kind)

    def _on_message(self, topic, msg):
        if len(self.inbox) < INBOX_MAX:
            self.inbox.append((topic, msg))

    def connect(self):
        cfg = self.cfg
        if not self.hal.wifi_connect(cfg["wifi_ssid"], cfg["wifi_password"]):
            raise OSError("wifi not connected")
        c = self.hal.mqtt_client(self.node_id, self.host, self.port, cfg["user"], cfg["password"], cfg["keepalive"])
        c.set_callback(self._on_message)
        c.set_last_will(self.topic(P.STATUS), P.last_will(self.node_id), retain=True, qos=1)
        c.connect(clean_session=True)
        self.client = c
        self.connected = True
        c.subscribe(self.topic(P.OTA_OFFER), 1)
        c.subscribe(self.topic(P.OTA_CHUNK), 1)
        c.publish(self.topic(P.STATUS), P.encode(P.STATUS, P.status(self.node_id, "online", self.hal.epoch_ms())),
                  True, 1)
        self.last_ping = self.hal.ticks_ms()

    def _lost(self):
        self.connected = False
        if self.client is not None:
            try:
                self.client.sock.close()
            except Exception:
                pass
        self.client = None
        self.next_connect = self.hal.ticks_ms()

    def _try_connect(self, now):
        if self.hal.ticks_diff(now, self.next_connect) < 0:
            return
        try:
            self.connect()
        except Exception:
            self._lost()
            self.next_connect = self.hal.ticks_add(now, self.backoff)
            self.backoff = min(self.backoff * 2, self.cfg["backoff_max_ms"])
            return
        self.backoff = self.cfg["backoff_min_ms"]
        self.connects += 1
        pending = self.outbox
        self.outbox = []
        for kind, payload, qos, retain in pending:
            self.send(kind, payload, qos, retain)
        self.ota.on_connect()

    def send(self, kind, payload, qos=1, retain=False):
        """Publish now, or keep the message for after the reconnect."""
        if self.connected:
            try:
                self.client.publish(self.topic(kind), payload, retain, qos)
                return True
            except Exception:
                self._lost()
        if qos > 0:
            if len(self.outbox) >= OUTBOX_MAX:
                self.outbox.pop(0)
            self.outbox.append((kind, payload, qos, retain))
        return False

    def _poll(self):
        for _ in range(INBOX_MAX):
            n = len(self.inbox)
            if n >= INBOX_MAX:
                break
            try:
                self.client.check_msg()
            except Exception:
                self._lost()
                break
            if len(self.inbox) == n:
                break  # nothing more waiting (or a non-PUBLISH packet)
        while self.inbox:
            topic, msg = self.inbox.pop(0)
            try:
                kind = P.parse_topic(topic)[2]
            except Exception:
                continue
            try:
                if kind == P.OTA_OFFER:
                    if msg:  # an empty retained message clears the offer
                        self.ota.on_offer(msg)
                elif kind == P.OTA_CHUNK:
                    self.ota.on_chunk(msg)
            except OSError:  # flash full or failing: the update fails, the node keeps running
                self.ota.storage_error()

    # ------------------------------------------------------------ telemetry
    def sample(self):
        """One reading -> one result in the ring (the oldest is dropped when full)."""
        feats, truth = self.source.sample()
        ok = True
        try:
            result, score = self.model.run(feats, truth)
        except InferenceError:
            ok = False
            self.inference_errors += 1
        self.inferences += 1
        self.ota.after_inference(ok)
        if not ok:
            return None
        item = {"seq": self.seq.next(), "ts": self.hal.epoch_ms(), "model": self.cfg["model"],
                "model_version": self.model_version, "result": result, "score": score}
        if self.cfg["send_features"]:
            item["features"] = [round(f, 4) for f in feats]
        if len(self.ring) >= self.cfg["ring"]:
            self.ring.pop(0)
            self.dropped += 1
        self.ring.append((self.hal.ticks_ms(), item))
        return item

    def flush(self, now, force=False):
        """Publish full batches, or a partial one once its oldest item waited batch_ms."""
        cfg = self.cfg
        while self.connected and self.ring:
            if not force and len(self.ring) < cfg["batch"] and \
                    self.hal.ticks_diff(now, self.ring[0][0]) < cfg["batch_ms"]:
                return
            batch = [e[1] for e in self.ring[:cfg["batch"]]]
            payload = P.encode(P.TELEMETRY, {"v": P.SCHEMA, "node": self.node_id, "items": batch})
            try:
                self.client.publish(self.topic(P.TELEMETRY), payload, False, 1)
            except Exception:
                self._lost()
                return
            del self.ring[:len(batch)]

    def heartbeat(self):
        msg = {"v": P.SCHEMA, "node": self.node_id, "ts": self.hal.epoch_ms(), "fw": FW_VERSION,
               "runtime": P.RUNTIME_VERSION, "board": self.hal.board,
               "models": {self.cfg["model"]: self.model_version},
               "free_mem": self.hal.free_mem(), "uptime": self.hal.uptime_s()}
        self.send(P.HEARTBEAT, P.encode(P.HEARTBEAT, msg), 0)

    # ------------------------------------------------------------ loop
    def step(self):
        hal = self.hal
        now = hal.ticks_ms()
        if not self.connected:
            self._try_connect(now)
        if self.connected:
            self._poll()
        self.ota.tick()
        # A new model on trial is sampled every trial_sample_ms: its first N inferences
        # decide UPDATED or ROLLED_BACK soon, not N (possibly long) sample periods later.
        period = self.cfg["sample_ms"]
        if self.ota.trial_left:
            period = min(period, self.cfg["trial_sample_ms"])
            soon = hal.ticks_add(self.last_sample, period)
            if hal.ticks_diff(soon, self.next_sample) < 0:
                self.next_sample = soon
        if hal.ticks_diff(now, self.next_sample) >= 0:
            self.last_sample = now
            # Fixed rate: a late loop pass does not stretch the period; a whole missed period is skipped.
            nxt = hal.ticks_add(self.next_sample, period)
            self.next_sample = nxt if hal.ticks_diff(nxt, now) > 0 else hal.ticks_add(now, period)
            self.sample()
        self.flush(now)
        if self.connected and hal.ticks_diff(now, self.next_heartbeat) >= 0:
            self.next_heartbeat = hal.ticks_add(now, self.cfg["heartbeat_ms"])
            self.heartbeat()
        if self.connected and hal.ticks_diff(now, self.last_ping) >= self.cfg["keepalive"] * 500:
            self.last_ping = now
            try:
                self.client.ping()
            except Exception:
                self._lost()

    def stop(self):
        """Clean shutdown: say offline (the will only fires on a lost connection)."""
        if self.connected:
            self.flush(self.hal.ticks_ms(), True)
            try:
                self.client.publish(self.topic(P.STATUS), P.last_will(self.node_id), True, 1)
                self.client.disconnect()
            except Exception:
                pass
        self.connected = False
        self.client = None

    def run(self):
        while True:
            self.step()
            self.hal.sleep_ms(10)


def main(config_path="/config.json"):
    from .hal import Hal
    Node(Hal(), config_path).run()
