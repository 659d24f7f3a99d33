"""The embedded fallback broker (tinyfleet/embedded_broker.py), for machines without
mosquitto: chosen by make_broker(), then exercised with real paho clients and a
simulated ESP32 node: QoS 1, retained, will, keepalive, shared subscriptions and a
persistent session like the gateway's."""
import json
import socket
import struct
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contract import protocol as P
from tinyfleet.broker import EmbeddedBroker, Mosquitto, make_broker


@pytest.fixture
def broker(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFLEET_BROKER", "embedded")
    b = make_broker(tmp_path / "broker")
    assert isinstance(b, EmbeddedBroker)
    b.start()
    yield b
    b.stop()


def wait(cond, timeout=5.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Client:
    """A paho client on its own thread that records (topic, payload, qos, retain)."""

    def __init__(self, broker, client_id, subscribe=(), clean=True, will=None):
        self.got, self.subacks, self.connacks = [], [], []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.c.username_pw_set("anyone", "anything")  # the fallback accepts every login
        if will:
            self.c.will_set(*will)
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload, m.qos, m.retain))
        self.c.on_subscribe = lambda c, u, mid, codes, p: self.subacks.append(codes)
        self.c.on_connect = lambda c, u, flags, rc, p: self.connacks.append(flags.session_present)
        self.c.connect("127.0.0.1", broker.port, keepalive=10)
        self.c.loop_start()
        wait(lambda: self.connacks, what="CONNACK")
        for f in subscribe:
            self.c.subscribe(f, 1)
        wait(lambda: len(self.subacks) == len(subscribe), what="SUBACK")

    def publish(self, topic, payload, qos=1, retain=False):
        self.c.publish(topic, payload, qos, retain).wait_for_publish(5)

    def close(self):
        self.c.disconnect()  # a clean DISCONNECT, sent by the loop thread before it ends
        self.c.loop_stop()

    def drop(self):
        """The TCP connection just goes, no DISCONNECT (a node losing power)."""
        self.c.loop_stop()
        self.c.socket().close()


def test_make_broker_picks_the_fallback_without_mosquitto(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYFLEET_BROKER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no mosquitto on it
    b = make_broker(tmp_path / "b")
    assert isinstance(b, EmbeddedBroker) and "mosquitto is not installed" in b.describe()
    assert "no persistence across restarts" in b.describe() and "msg/s" in b.describe()
    with b:  # the child is started with sys.executable, so PATH does not matter
        c = Client(b, "probe")
        c.close()
    monkeypatch.setenv("TINYFLEET_BROKER", "nonsense")
    with pytest.raises(ValueError, match="auto, mosquitto or embedded"):
        make_broker(tmp_path / "c")


def test_auto_still_prefers_mosquitto(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYFLEET_BROKER", raising=False)
    import shutil
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed here")
    assert isinstance(make_broker(tmp_path / "b"), Mosquitto)


def test_qos1_publish_reaches_subscriber(broker):
    sub = Client(broker, "sub", ["fleet/+/telemetry"])
    pub = Client(broker, "pub")
    for i in range(50):
        pub.publish(f"fleet/n{i % 3}/telemetry", b"%d" % i)
    pub.publish("fleet/n1/status", b"not matched")
    wait(lambda: len(sub.got) == 50, what="50 messages")
    assert [m[1] for m in sub.got] == [b"%d" % i for i in range(50)]
    assert {m[2] for m in sub.got} == {1} and not any(m[3] for m in sub.got)
    assert sub.subacks[0][0].value == 1  # granted QoS 1
    sub.close()
    pub.close()


def test_retained_message_reaches_a_late_subscriber_and_can_be_cleared(broker):
    pub = Client(broker, "pub")
    pub.publish("tinyfleet/s/n1/status", b"online", retain=True)
    pub.publish("tinyfleet/s/n2/status", b"old", retain=True)
    pub.publish("tinyfleet/s/n2/status", b"", retain=True)  # an empty retained message clears it
    late = Client(broker, "late", ["tinyfleet/s/#"])
    wait(lambda: late.got, what="the retained message")
    time.sleep(0.2)
    assert late.got == [("tinyfleet/s/n1/status", b"online", 1, True)]
    pub.publish("tinyfleet/s/n1/status", b"live")  # a live message is not flagged retained
    wait(lambda: len(late.got) == 2, what="live message")
    assert late.got[1][3] is False
    pub.close()
    late.close()


def test_will_of_an_abruptly_closed_client_is_published(broker):
    watcher = Client(broker, "watcher", ["nodes/+/status"])
    node = Client(broker, "n1", will=("nodes/n1/status", b"offline", 1, True))
    polite = Client(broker, "n2", will=("nodes/n2/status", b"offline", 1, True))
    polite.close()  # a clean DISCONNECT discards the will
    node.drop()
    wait(lambda: watcher.got, what="the will")
    time.sleep(0.3)
    assert watcher.got == [("nodes/n1/status", b"offline", 1, False)]
    late = Client(broker, "late", ["nodes/+/status"])  # the will was retained
    wait(lambda: late.got, what="retained will")
    assert late.got == [("nodes/n1/status", b"offline", 1, True)]
    watcher.close()
    late.close()


def test_will_after_keepalive_timeout(broker):
    """A client that goes silent (no PINGREQ) is dropped after 1.5 x keepalive."""
    watcher = Client(broker, "watcher", ["nodes/#"])
    s = socket.create_connection(("127.0.0.1", broker.port))

    def s16(b):
        return struct.pack("!H", len(b)) + b
    # CONNECT, MQTT 3.1.1, clean session + will QoS 0, keepalive 1 s
    body = s16(b"MQTT") + bytes([4, 0x02 | 0x04]) + struct.pack("!H", 1) + s16(b"silent") \
        + s16(b"nodes/silent/status") + s16(b"gone")
    s.sendall(bytes([0x10, len(body)]) + body)
    assert s.recv(4) == b"\x20\x02\x00\x00"
    t0 = time.monotonic()
    wait(lambda: watcher.got, 5, "the will after the keepalive")
    assert 1.2 < time.monotonic() - t0 < 4.5
    assert watcher.got == [("nodes/silent/status", b"gone", 0, False)]
    s.close()
    watcher.close()


def test_shared_subscription_splits_messages(broker):
    a = Client(broker, "gw-a", ["$share/tf-site/tinyfleet/site/+/+"])
    b = Client(broker, "gw-b", ["$share/tf-site/tinyfleet/site/+/+"])
    everything = Client(broker, "monitor", ["tinyfleet/#"])
    pub = Client(broker, "node")
    for i in range(40):
        pub.publish("tinyfleet/site/node/telemetry", b"%d" % i)
    wait(lambda: len(a.got) + len(b.got) == 40 and len(everything.got) == 40, what="40 messages")
    time.sleep(0.2)
    seen = sorted(int(m[1]) for m in a.got + b.got)
    assert seen == list(range(40))  # each message went to exactly one of the group
    assert len(a.got) == len(b.got) == 20  # round robin
    assert {m[0] for m in a.got} == {"tinyfleet/site/node/telemetry"}  # the real topic, not the $share one
    b.close()  # a member that leaves gets nothing more; the other takes it all
    for i in range(5):
        pub.publish("tinyfleet/site/node/telemetry", b"x")
    wait(lambda: len(a.got) == 25, what="the remaining member")
    for c in (a, everything, pub):
        c.close()


def test_persistent_session_keeps_messages_while_offline(broker):
    """Like the gateway: clean_session=False on a shared filter; what arrives while it
    restarts is delivered when it is back."""
    gw = Client(broker, "gateway-1", ["$share/g/t/#"], clean=False)
    assert gw.connacks == [False]
    gw.close()
    pub = Client(broker, "pub")
    for i in range(10):
        pub.publish("t/x", b"%d" % i)
    pub.publish("t/x", b"qos0 is not queued", qos=0)
    gw2 = Client(broker, "gateway-1", clean=False)
    assert gw2.connacks == [True]
    wait(lambda: len(gw2.got) == 10, what="queued messages")
    assert [m[1] for m in gw2.got] == [b"%d" % i for i in range(10)]
    gw2.close()
    pub.close()


def test_a_simulated_esp32_node_publishes_telemetry_through_it(broker, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent / "node"))
    import esp32_models
    from node_firmware.sim.node import SimNode

    site = "site-1"
    gateway = Client(broker, "gateway", [f"$share/tf-{site}/{P.ROOT}/{site}/+/+"], clean=False)
    node = SimNode.create(tmp_path / "n1", "esp32-1", site, broker.url, "sine", esp32_models.blob("sine", 1),
                          bytes(range(32)).hex(), sample_ms=20, batch=4, heartbeat_ms=200)

    def items():
        return [i for t, m, _, _ in gateway.got if t.endswith("/telemetry")
                for i in P.decode(P.TELEMETRY, m)["items"]]

    node.run(15, until=lambda: len(items()) >= 12)
    got = items()
    assert len(got) >= 12 and [i["seq"] for i in got] == list(range(len(got)))
    assert {i["model"] for i in got} == {"sine"}
    kinds = {t.rsplit("/", 1)[1] for t, *_ in gateway.got}
    assert {"telemetry", "heartbeat", "status"} <= kinds
    node.kill()  # power cut: the broker publishes the node's will
    wait(lambda: P.decode(P.STATUS, [m for t, m, *_ in gateway.got if t.endswith("/status")][-1])["state"]
         == "offline", what="offline will")
    assert json.loads(gateway.got[-1][1])["node"] == "esp32-1"
    gateway.close()
