"""The gateway's side of OTA for the node tests, over the real broker: publish a
signed retained offer, answer ota/request windows with chunk frames (optionally
tampered), record every ota/state and telemetry message. The production gateway
lives in gateway/; this stays small on purpose."""
import collections
import threading
import time

import paho.mqtt.client as mqtt

from contract import protocol as P


class GatewaySide:
    def __init__(self, port, site, client_id="test-gateway"):
        self.site = site
        self.lock = threading.Lock()
        self.deployments = {}           # deployment -> (manifest, blob)
        self.tamper = None              # f(index, frame) -> frame, applied to every chunk sent
        self.served = collections.Counter()   # node -> chunk data bytes sent
        self.requests = []              # decoded ota/request messages
        self.states = collections.defaultdict(list)   # node -> [(deployment, state, reason)]
        self.telemetry = collections.defaultdict(list)  # node -> [items]
        self.status = {}                # node -> last status state
        self.heartbeats = collections.defaultdict(list)
        self.errors = []                # (topic, ContractError) for anything that breaks the contract
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        self.wait(lambda: self.c.is_connected(), 5, "gateway connect")

    def _on_connect(self, client, userdata, flags, reason, props):
        client.subscribe(P.site_filter(self.site), qos=1)

    def _on_message(self, client, userdata, msg):
        try:
            self._handle(msg)
        except P.ContractError as e:
            with self.lock:
                self.errors.append((msg.topic, e))

    def _handle(self, msg):
        _, node, kind = P.parse_topic(msg.topic)
        if kind == P.OTA_OFFER or (kind == P.STATUS and not msg.payload):
            return
        if kind == P.OTA_REQUEST:
            req = P.decode(kind, msg.payload)
            with self.lock:
                self.requests.append(req)
                dep = self.deployments.get(req["deployment"])
            if dep is not None:
                self._serve(node, dep, req["index"], req["count"])
        elif kind == P.OTA_STATE:
            s = P.decode(kind, msg.payload)
            with self.lock:
                self.states[node].append((s["deployment"], s["state"], s.get("reason")))
        elif kind == P.TELEMETRY:
            t = P.decode(kind, msg.payload)
            with self.lock:
                self.telemetry[node].extend(t["items"])
        elif kind == P.STATUS:
            with self.lock:
                self.status[node] = P.decode(kind, msg.payload)["state"]
        elif kind == P.HEARTBEAT:
            h = P.decode(kind, msg.payload)
            with self.lock:
                self.heartbeats[node].append(h)

    def _serve(self, node, dep, index, count):
        m, blob = dep
        cs = m["chunk_size"]
        n = P.chunk_count(len(blob), cs)
        for i in range(index, min(index + count, n)):
            data = blob[i * cs:(i + 1) * cs]
            frame = P.encode_chunk(m["sha256"], i, data)
            if self.tamper is not None:
                frame = self.tamper(i, frame)
                if frame is None:
                    continue  # dropped on the way
            with self.lock:
                self.served[node] += len(data)
            self.c.publish(P.topic(self.site, node, P.OTA_CHUNK), frame, qos=1)

    def offer(self, node, manifest, blob):
        with self.lock:
            self.deployments[manifest["deployment"]] = (manifest, blob)
        self.c.publish(P.topic(self.site, node, P.OTA_OFFER), P.encode(P.OTA_OFFER, manifest), qos=1, retain=True)

    def offer_raw(self, node, payload):
        self.c.publish(P.topic(self.site, node, P.OTA_OFFER), payload, qos=1, retain=True)

    def clear_offer(self, node):
        self.c.publish(P.topic(self.site, node, P.OTA_OFFER), b"", qos=1, retain=True)

    def states_of(self, node, deployment):
        with self.lock:
            return [(s, r) for d, s, r in self.states[node] if d == deployment]

    def final(self, node, deployment):
        for s, r in self.states_of(node, deployment):
            if s in P.FINAL_STATES:
                return s, r
        return None

    @staticmethod
    def wait(cond, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(0.01)
        raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
