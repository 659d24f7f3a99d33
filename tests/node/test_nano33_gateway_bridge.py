"""End to end over a serial line: the Nano 33 C core on a pty, the gateway's real
serial bridge on the other end, a real mosquitto. The node's frames become MQTT
messages under its id, and an OTA driven purely over MQTT reaches UPDATED."""
import queue
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from contract import protocol as P

import nano33_harness as H

SITE = "site-1"


@pytest.fixture
def bridge(mosquitto):
    from gateway.config import GatewayConfig
    from gateway.metrics import Metrics
    from gateway.serial_bridge import SerialBridge
    made = {}

    def start(port):
        cfg = GatewayConfig(broker=mosquitto.url, cloud="http://127.0.0.1:9", site=SITE, serial=[port],
                            state_dir=mosquitto.dir / "gw")
        b = SerialBridge(cfg, Metrics())
        stop = threading.Event()
        b.start(stop)
        made["b"], made["stop"] = b, stop
        return b
    yield start
    if made:
        made["stop"].set()
        made["b"].close()


@pytest.fixture
def mqtt_client(mosquitto):
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-gw")
    c.on_message = lambda cl, u, m: got.put((m.topic, m.payload, m.retain))
    c.connect("127.0.0.1", mosquitto.port)
    c.subscribe(P.site_filter(SITE), qos=1)
    c.loop_start()
    c.got = got
    yield c
    c.loop_stop()
    c.disconnect()


def next_msg(client, kinds, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            topic, payload, retain = client.got.get(timeout=0.2)
        except queue.Empty:
            continue
        _, node, kind = P.parse_topic(topic)
        if kind in kinds:
            return node, kind, (payload if kind == P.OTA_CHUNK else P.decode(kind, payload))
    raise TimeoutError("no %s on MQTT" % (kinds,))


def test_node_over_serial_bridge_publishes_and_takes_an_ota(tmp_path, bridge, mqtt_client):
    from training import testmodels, tflite_to_blob
    t2 = testmodels.get("dense_sine_pt")
    v1 = tflite_to_blob.convert(testmodels.get("dense_sine"), "sine", 1)
    v2 = tflite_to_blob.convert(t2, "sine", 2)
    node = H.PortNode(tmp_path / "node", factory=v1)
    try:
        bridge(node.port)
        node.wait_opened()
        node.start()
        who, _, st = next_msg(mqtt_client, (P.STATUS,))
        assert who == "nano-7" and st["state"] == "online"
        _, _, t = next_msg(mqtt_client, (P.TELEMETRY,))
        assert t["node"] == "nano-7" and t["items"][0]["model"] == "sine"

        m = P.build_manifest(H.FLEET_KEY, "fleet", "d-serial", "sine", 2, v2, 256, H.golden(t2))
        mqtt_client.publish(P.topic(SITE, "nano-7", P.OTA_OFFER), P.encode(P.OTA_OFFER, m), qos=1, retain=True)
        states = []
        while not states or states[-1] not in P.FINAL_STATES:
            _, kind, msg = next_msg(mqtt_client, (P.OTA_REQUEST, P.OTA_STATE))
            if kind == P.OTA_STATE:
                states.append(msg["state"])
                continue
            for i in range(msg["index"], min(msg["index"] + msg["count"], P.chunk_count(len(v2), 256))):
                mqtt_client.publish(P.topic(SITE, "nano-7", P.OTA_CHUNK),
                                    P.encode_chunk(m["sha256"], i, v2[i * 256:(i + 1) * 256]), qos=1)
        assert states == ["QUEUED", "DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]
        while True:
            _, _, hb = next_msg(mqtt_client, (P.HEARTBEAT,))
            if hb["models"] == {"sine": 2}:
                break
    finally:
        node.stop()
