"""Runs INSIDE the real MicroPython (WebAssembly build, node_firmware/wasm/run.mjs):
the ESP32 app's inference path and OTA state machine, with an in-memory broker in
place of umqtt (the real-broker tests run on CPython). Prints one JSON line of
results; any failed check raises, which run.mjs turns into exit code 1.
argv: blob_v1 blob_v2 golden_v2.json"""
import json
import os
import sys
import time

from contract import protocol as P
from tinyfleet_node.app import Node
from tinyfleet_node.hal import Hal, Storage
from tinyfleet_node.ota import golden_vectors

KEY = bytes(range(32))
SITE = "wasm"


def match(filt, topic):
    f = filt.split("/")
    t = topic.split("/")
    for i in range(len(f)):
        if f[i] == "#":
            return True
        if i >= len(t) or (f[i] != "+" and f[i] != t[i]):
            return False
    return len(f) == len(t)


class Broker:
    def __init__(self):
        self.clients = []
        self.retained = {}

    def route(self, topic, msg, retain):
        if retain:
            if msg:
                self.retained[topic] = msg
            elif topic in self.retained:
                del self.retained[topic]
        for c in self.clients:
            for f in c.subs:
                if match(f, topic):
                    c.queue.append((topic.encode(), bytes(msg)))
                    break


class _Sock:
    def __init__(self, client):
        self.client = client

    def close(self):
        self.client.drop()


class MemClient:
    """umqtt.simple.MQTTClient's methods over the in-memory broker."""

    def __init__(self, broker, client_id):
        self.broker = broker
        self.client_id = client_id
        self.subs = []
        self.queue = []
        self.cb = None
        self.will = None
        self.sock = _Sock(self)

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.will = (topic, msg, retain)

    def connect(self, clean_session=True, timeout=None):
        self.broker.clients.append(self)
        return False

    def drop(self):
        if self in self.broker.clients:
            self.broker.clients.remove(self)
            if self.will:
                self.broker.route(self.will[0], self.will[1], self.will[2])

    def disconnect(self):
        if self in self.broker.clients:
            self.broker.clients.remove(self)

    def ping(self):
        pass

    def publish(self, topic, msg, retain=False, qos=0):
        if self not in self.broker.clients:
            raise OSError(128)
        self.broker.route(topic if isinstance(topic, str) else topic.decode(), msg, retain)

    def subscribe(self, topic, qos=0):
        self.subs.append(topic)
        for t in self.broker.retained:
            if match(topic, t):
                self.queue.append((t.encode(), self.broker.retained[t]))

    def check_msg(self):
        if self.queue:
            t, m = self.queue.pop(0)
            if self.cb:
                self.cb(t, m)
        return None

    def wait_msg(self):
        return self.check_msg()


class CutStorage(Storage):
    """Flash whose power fails before mutation number `cut_at`."""

    def __init__(self, root, cut_at=None):
        Storage.__init__(self, root)
        self.ops = 0
        self.cut_at = cut_at

    def before(self, op, path):
        self.ops += 1
        if self.ops == self.cut_at:
            raise KeyboardInterrupt("power cut")  # BaseException, like the simulator's PowerCut


class WasmHal(Hal):
    def __init__(self, root, broker, cut_at=None):
        Hal.__init__(self, root)
        self.fs = CutStorage(root, cut_at)
        self.broker = broker

    def epoch_ms(self):
        return int(time.time()) * 1000

    def wifi_connect(self, ssid, password, timeout_ms=15000):
        return True

    def power_lost(self):
        return False  # no machine module here: every reboot counts as a crash

    def mqtt_client(self, client_id, host, port, user, password, keepalive):
        return MemClient(self.broker, client_id)


class Gateway:
    def __init__(self, broker):
        self.c = MemClient(broker, "gw")
        self.c.connect()
        self.c.set_callback(self.on_msg)
        self.c.subscribe(P.site_filter(SITE, P.OTA_REQUEST))
        self.c.subscribe(P.site_filter(SITE, P.OTA_STATE))
        self.c.subscribe(P.site_filter(SITE, P.TELEMETRY))
        self.c.subscribe(P.site_filter(SITE, P.STATUS))
        self.deps = {}
        self.states = {}
        self.items = {}
        self.status = {}
        self.tamper = None

    def on_msg(self, topic, msg):
        _, node, kind = P.parse_topic(topic)
        if kind == P.OTA_REQUEST:
            r = P.decode(kind, msg)
            m, blob = self.deps[r["deployment"]]
            cs = m["chunk_size"]
            for i in range(r["index"], min(r["index"] + r["count"], P.chunk_count(len(blob), cs))):
                frame = P.encode_chunk(m["sha256"], i, blob[i * cs:(i + 1) * cs])
                if self.tamper:
                    frame = self.tamper(i, frame, m)
                self.c.publish(P.topic(SITE, node, P.OTA_CHUNK), frame)
        elif kind == P.OTA_STATE:
            s = P.decode(kind, msg)
            self.states.setdefault(node, []).append((s["state"], s.get("reason")))
        elif kind == P.TELEMETRY:
            self.items.setdefault(node, []).extend(P.decode(kind, msg)["items"])
        elif kind == P.STATUS:
            self.status[node] = P.decode(kind, msg)["state"]

    def pump(self):
        while self.c.queue:
            self.c.check_msg()

    def offer(self, node, m, blob):
        self.deps[m["deployment"]] = (m, blob)
        self.c.publish(P.topic(SITE, node, P.OTA_OFFER), P.encode(P.OTA_OFFER, m), True)

    def final(self, node):
        for s, r in self.states.get(node, []):
            if s in P.FINAL_STATES:
                return [s, r]
        return None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def setup(node_id, blob):
    root = "/flash-" + node_id
    os.mkdir(root)
    fs = Storage(root)
    fs.makedirs("/models")
    fs.write_file("/config.json", json.dumps({
        "node_id": node_id, "site": SITE, "broker": "mqtt://mem:1883", "model": "sine",
        "hmac_key": "".join("%02x" % b for b in KEY), "sample_ms": 1, "batch": 4, "batch_ms": 1,
        "trial_inferences": 2}).encode())
    fs.write_file("/models/slot_a.tfmb", blob)
    return root


def run(node, gw, cond, steps=3000):
    for _ in range(steps):
        node.step()
        gw.pump()
        if cond():
            return True
    return False


def main():
    v1 = read(sys.argv[1])
    v2 = read(sys.argv[2])
    golden = golden_vectors({"golden": json.loads(read(sys.argv[3]))})
    broker = Broker()
    gw = Gateway(broker)
    out = {}

    def manifest(dep, gold=golden):
        return P.build_manifest(KEY, "fleet", dep, "sine", 2, v2, 48, gold)

    # inference path + telemetry
    node = Node(WasmHal(setup("n1", v1), broker))
    assert run(node, gw, lambda: len(gw.items.get("n1", [])) >= 8)
    assert [i["seq"] for i in gw.items["n1"]][:8] == list(range(8))
    assert gw.status["n1"] == "online"
    node.client.sock.close()
    gw.pump()
    assert gw.status["n1"] == "offline"
    out["telemetry"] = len(gw.items["n1"])

    # a good update, then the same model answering the golden inputs
    node = Node(WasmHal(setup("n2", v1), broker))
    gw.offer("n2", manifest("d-good"), v2)
    assert run(node, gw, lambda: gw.final("n2") is not None)
    out["good"] = [s for s, _ in gw.states["n2"]]
    assert out["good"] == ["QUEUED", "DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"], out["good"]
    assert node.model_version == 2
    for i, o in golden:
        assert node.model.model.invoke(i) == o

    # a chunk with a bad crc is dropped and fetched again
    node = Node(WasmHal(setup("n3", v1), broker))
    spoiled = []

    def flip(i, frame, m):
        if i == 2 and not spoiled:
            spoiled.append(i)
            return frame[:-1] + bytes([frame[-1] ^ 1])
        return frame
    gw.tamper = flip
    gw.offer("n3", manifest("d-crc"), v2)
    assert run(node, gw, lambda: gw.final("n3") is not None)
    out["bad_crc"] = [gw.final("n3"), node.ota.crc_errors]
    assert out["bad_crc"] == [["UPDATED", None], 1]

    # a blob changed with a valid crc fails sha256
    node = Node(WasmHal(setup("n4", v1), broker))
    def rewrite(i, frame, m):
        if i != 1:
            return frame
        data = frame[P.CHUNK_HEADER_SIZE:]
        return P.encode_chunk(m["sha256"], i, bytes([data[0] ^ 1]) + data[1:])  # valid crc, wrong data
    gw.tamper = rewrite
    gw.offer("n4", manifest("d-sha"), v2)
    assert run(node, gw, lambda: gw.final("n4") is not None)
    gw.tamper = None
    out["bad_sha256"] = gw.final("n4")
    assert out["bad_sha256"] == ["FAILED", "bad_sha256"], out["bad_sha256"]

    # bad HMAC
    node = Node(WasmHal(setup("n5", v1), broker))
    m = manifest("d-hmac")
    m["version"] = 3
    gw.offer("n5", m, v2)
    assert run(node, gw, lambda: gw.final("n5") is not None)
    out["bad_hmac"] = gw.final("n5")
    assert out["bad_hmac"] == ["FAILED", "bad_hmac"]

    # golden vectors the model does not reproduce: rolled back
    node = Node(WasmHal(setup("n6", v1), broker))
    wrong = [(i, bytes([b ^ 0x7F for b in o])) for i, o in golden]
    gw.offer("n6", manifest("d-self", wrong), v2)
    assert run(node, gw, lambda: gw.final("n6") is not None)
    out["self_test"] = gw.final("n6")
    assert out["self_test"] == ["ROLLED_BACK", "self_test"] and node.model_version == 1

    # power cut at every flash mutation of an update: always boots on a valid model
    ops = []
    for cut in range(1, 200):
        nid = "p%d" % cut
        root = setup(nid, v1)
        gw.offer(nid, manifest("d-" + nid), v2)
        hal = WasmHal(root, broker, cut)
        node = None
        try:
            node = Node(hal)
            run(node, gw, lambda: gw.final(nid) is not None)
        except KeyboardInterrupt:
            if node is not None and node.client is not None:
                node.client.sock.close()
            node = Node(WasmHal(root, broker))  # the reboot
            assert node.model_version in (1, 2)
            assert run(node, gw, lambda: gw.final(nid) is not None)
            ops.append(cut)
            continue
        assert gw.final(nid) == ["UPDATED", None]
        break  # this cut point lies past the whole update
    assert all(gw.final("p%d" % c) == ["UPDATED", None] for c in ops)
    out["power_cuts"] = len(ops)
    print(json.dumps(out))


main()
