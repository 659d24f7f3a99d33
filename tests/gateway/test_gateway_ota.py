"""OTA through the relay: 20 nodes, one blob download from the cloud, all UPDATED;
cancel clears the retained offers; a restarted gateway serves from its disk cache."""
import threading
import time

import paho.mqtt.client as mqtt

from gw_harness import SITE, client, wait_for
from contract import protocol as p
from ota_node import OtaClient

FLEET_KEY = b"fleet-key"


class MqttNode:
    def __init__(self, port: int, node: str, key: bytes):
        self.c = client(port, node)
        self.ota = OtaClient(node, key, lambda kind, data: self.c.publish(p.topic(SITE, node, kind), data, qos=1))
        self.c.on_message = self._msg
        self.c.subscribe([(p.topic(SITE, node, p.OTA_OFFER), 1), (p.topic(SITE, node, p.OTA_CHUNK), 1)])

    def _msg(self, c, u, m: mqtt.MQTTMessage) -> None:
        (self.ota.on_offer if m.topic.endswith(p.OTA_OFFER) else self.ota.on_chunk)(m.payload)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def retained_offer(port: int, node: str) -> bytes | None:
    got, ev = [], threading.Event()
    c = client(port, "peek-" + node)
    c.on_message = lambda c_, u, m: (got.append(m.payload), ev.set())
    c.subscribe(p.topic(SITE, node, p.OTA_OFFER), 1)
    ev.wait(1.5)
    c.disconnect()
    c.loop_stop()
    return got[0] if got else None


def updated_nodes(cloud, deployment: str) -> set[str]:
    return {s["node"] for s in cloud.records("ota_state") if s["deployment"] == deployment and s["state"] == p.UPDATED}


def test_twenty_node_ota_downloads_the_blob_once(mosquitto, cloud, gateway_factory):
    gw = gateway_factory(mosquitto.url, cloud.url).start()
    blob = bytes((i * 7919) % 251 for i in range(20_000))
    sha = cloud.add_blob(blob)
    nodes = [f"node-{i:02d}" for i in range(20)]
    keys = {n: FLEET_KEY for n in nodes}
    keys["node-19"] = b"node-19-own-key"          # one node with a per-node key and manifest
    sims = [MqttNode(mosquitto.port, n, keys[n]) for n in nodes]
    m = p.build_manifest(FLEET_KEY, "fleet", "d-1", "sine", 2, blob, 512, [(b"\x01", b"\x7f")])
    own = p.build_manifest(keys["node-19"], "node", "d-1", "sine", 2, blob, 512, [(b"\x01", b"\x7f")])
    t0 = time.monotonic()
    cloud.add_event("deployment", {"deployment": "d-1", "manifest": m, "nodes": nodes,
                                   "blob_url": p.BLOB_PATH.format(sha256=sha), "node_manifests": {"node-19": own}})
    wait_for(lambda: all(s.ota.state for s in sims), 2.0, "every node to act on its offer within 2 s", step=0.05)
    lag = time.monotonic() - t0
    stop = threading.Event()
    ticker = threading.Thread(target=lambda: [s.ota.tick() for _ in iter(lambda: stop.wait(0.5), True) for s in sims])
    ticker.start()
    try:
        wait_for(lambda: updated_nodes(cloud, "d-1") == set(nodes), 60, "20 nodes UPDATED")
    finally:
        stop.set()
        ticker.join()
    took = time.monotonic() - t0
    assert all(s.ota.blob == blob for s in sims)
    assert cloud.blob_downloads() == 1
    assert gw.metric("tinyfleet_gateway_blob_downloads_total") == 1
    chunks = gw.metric("tinyfleet_gateway_ota_chunks_sent_total")
    print(f"ota: offers acted on {lag:.2f} s after the cloud event; 20 nodes UPDATED in {took:.1f} s, {chunks:.0f} chunks, blob downloads {cloud.blob_downloads()}")
    assert chunks >= 20 * p.chunk_count(len(blob), 512)
    assert wait_for(lambda: gw.metric("tinyfleet_gateway_ota_nodes", deployment="d-1", state="UPDATED") == 20, 5,
                    "the OTA progress gauge")
    states = [s["state"] for s in cloud.records("ota_state") if s["node"] == "node-03"]
    assert states == [p.DOWNLOADING, p.DOWNLOADED, p.VERIFIED, p.UPDATING, p.UPDATED]

    # a rollback wave of the same deployment ships another blob to two nodes
    old = bytes(range(256)) * 30
    old_sha = cloud.add_blob(old)
    rb = p.build_manifest(FLEET_KEY, "fleet", "d-1", "sine", 1, old, 512, [(b"\x01", b"\x7f")], rollback=True)
    cloud.add_event("deployment", {"deployment": "d-1", "manifest": rb, "nodes": nodes[:2],
                                   "blob_url": p.BLOB_PATH.format(sha256=old_sha), "node_manifests": {}})
    wait_for(lambda: all(s.ota.blob == old for s in sims[:2]), 20, "the rollback blob on two nodes")
    assert all(s.ota.blob == blob for s in sims[2:])
    assert cloud.blob_downloads() == 2

    # cancel clears the retained offer
    assert retained_offer(mosquitto.port, "node-05")
    cloud.add_event("cancel", {"deployment": "d-1", "nodes": nodes})
    wait_for(lambda: retained_offer(mosquitto.port, "node-05") is None, 10, "the offer to be cleared")

    # a restarted gateway resumes the event stream (no replay of d-1) and serves d-2 from its disk cache
    gw.stop()
    gw.start()
    m2 = p.build_manifest(FLEET_KEY, "fleet", "d-2", "sine", 3, blob, 1024, [(b"\x01", b"\x7f")])
    cloud.add_event("deployment", {"deployment": "d-2", "manifest": m2, "nodes": nodes[:2],
                                   "blob_url": p.BLOB_PATH.format(sha256=sha), "node_manifests": {}})
    wait_for(lambda: updated_nodes(cloud, "d-2") == set(nodes[:2]), 30, "2 nodes UPDATED on d-2")
    assert cloud.blob_downloads() == 2          # the first blob came from the disk cache
    assert retained_offer(mosquitto.port, "node-05") is None     # d-1 was not replayed
    for s in sims:
        s.close()
