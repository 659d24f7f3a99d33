"""Bad input is dropped and counted per reason; the gateway keeps running and still
forwards the good messages that follow."""
import json
import urllib.request

import pytest

from gw_harness import SITE, client, item, telemetry_payload, wait_for
from contract import protocol as p
from gateway.config import GatewayConfig


def publish_all(c, msgs):
    for topic, payload in msgs:
        c.publish(topic, payload, qos=1).wait_for_publish(5)


def test_bad_messages_are_dropped_and_counted(mosquitto, cloud, gateway_factory):
    gw = gateway_factory(mosquitto.url, cloud.url).start()
    c = client(mosquitto.port, "node-x")
    t = f"tinyfleet/{SITE}/node-1/telemetry"
    bad = [
        (t, b"{not json"),                                                             # bad_json
        (t, b"\xff\xfe"),                                                              # bad_json (not UTF-8)
        (t, json.dumps({"v": 2, "node": "node-1", "items": [item(1)]}).encode()),      # bad_version
        (t, json.dumps(p.telemetry("node-1", [dict(item(1), features=[0.5] * 3000)])).encode()),  # oversize (> 16 KiB)
        (t, telemetry_payload("node-1", [1])[:40]),                                       # bad_json (truncated)
        (t, json.dumps({"v": 1, "node": "node-1"}).encode()),                          # missing_field
        (t, json.dumps(p.telemetry("node-1", [dict(item(1), score=True)])).encode()),  # wrong_type
        (t, json.dumps(p.telemetry("node-1", [])).encode()),                           # bad_value
        (f"tinyfleet/{SITE}/node-1/selfie", telemetry_payload("node-1", [1])),         # bad_topic: unknown kind
        (f"tinyfleet/{SITE}/n@de/telemetry", b"{}"),                                   # bad_topic: node id
        (f"tinyfleet/{SITE}/node-1/ota/chunk", b"TC..."),                               # not subscribed: never seen
        (t, telemetry_payload("node-2", [1])),                                          # spoofed_node
    ]
    publish_all(c, bad)
    hb = {"v": 1, "node": "node-1", "ts": 1, "fw": "0.1.0", "runtime": 1, "board": "esp32", "models": {"sine": 1},
          "free_mem": 1000, "uptime": 5}
    publish_all(c, [(t, telemetry_payload("node-1", [1, 2])),
                    (f"tinyfleet/{SITE}/node-1/heartbeat", p.encode(p.HEARTBEAT, hb))])
    wait_for(lambda: len(cloud.stored()) == 2, 10, "the good message to be stored")
    wait_for(lambda: cloud.records("heartbeat") == [hb], 5, "the heartbeat")
    assert gw.alive()
    drops = gw.drops()
    assert drops == {"bad_json": 3, "bad_version": 1, "oversize": 1, "missing_field": 1, "wrong_type": 1,
                     "bad_value": 1, "bad_topic": 2, "spoofed_node": 1}, drops
    assert set(cloud.stored()) == {("node-1", 1), ("node-1", 2)}
    assert gw.metric("tinyfleet_gateway_messages_in_total", kind="telemetry") == 1
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/healthz", timeout=5).read())
    assert health["cloud_ok"] is True and health["gateway"] == "gw-site-a"
    assert gw.stop() == 0


def test_spoofed_node_ids_on_the_acl_broker(mosquitto_auth, cloud, gateway_factory):
    gw = gateway_factory(mosquitto_auth.url, cloud.url, "--broker-user", "gateway", "--broker-password", "gw-secret").start()
    n1 = client(mosquitto_auth.port, "node-1", "node-1", "secret-1")
    # 1. node-1 writes on node-2's topic: the broker's ACL drops it, the gateway never sees it
    n1.publish(f"tinyfleet/{SITE}/node-2/telemetry", telemetry_payload("node-2", [5]), qos=1).wait_for_publish(5)
    # 2. node-1 writes on its own topic but claims to be node-2: the gateway drops it
    n1.publish(f"tinyfleet/{SITE}/node-1/telemetry", telemetry_payload("node-2", [6]), qos=1).wait_for_publish(5)
    # 3. an honest message still goes through
    n1.publish(f"tinyfleet/{SITE}/node-1/telemetry", telemetry_payload("node-1", [7]), qos=1).wait_for_publish(5)
    wait_for(lambda: cloud.stored(), 10, "node-1's message")
    assert set(cloud.stored()) == {("node-1", 7)}
    assert gw.drops() == {"spoofed_node": 1}
    assert gw.alive()


def test_config_takes_broker_credentials_from_the_url_or_the_options():
    c = GatewayConfig(broker="mqtt://gw:pw@10.0.0.2:1884", cloud="http://c", site="s1")
    assert c.broker_parts() == ("10.0.0.2", 1884, "gw", "pw")
    c = GatewayConfig(broker="mqtt://broker", cloud="http://c", site="s1", broker_password="pw")
    assert c.broker_parts() == ("broker", 1883, "gw-s1", "pw") and c.share_group == ""
    for bad in (dict(site="bad site"), dict(cloud="ftp://x"), dict(broker="http://x")):
        with pytest.raises(ValueError):
            GatewayConfig(**{**dict(broker="mqtt://b", cloud="http://c", site="s1"), **bad})
