"""The real ESP32 node app (node_firmware/sim: the MicroPython app code on a simulated
board) through the real gateway: its telemetry passes validation untouched, and an OTA of
a real model blob (golden vectors from the reference runtime) reaches UPDATED on every node."""
import sys
import time
from pathlib import Path

import pytest

from gw_harness import SITE, wait_for
from contract import protocol as p

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
esp32_models = pytest.importorskip("esp32_models")
pytest.importorskip("node_firmware.sim.node")

FLEET_KEY = bytes(range(32))


def test_real_esp32_nodes_update_through_the_relay(tmp_path, mosquitto, cloud, gateway_factory):
    from node_firmware.sim.node import SimNode
    gw = gateway_factory(mosquitto.url, cloud.url).start()
    v1, v2 = esp32_models.blob("sine", 1), esp32_models.blob("sine", 2)
    ids = [f"esp32-{i}" for i in range(1, 4)]
    nodes = [SimNode.create(tmp_path / n, n, SITE, mosquitto.url, "sine", v1, FLEET_KEY.hex()) for n in ids]

    def step_until(cond, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for n in nodes:
                n.step()
            if cond():
                return
            time.sleep(0.005)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; gateway drops {gw.drops()}")

    step_until(lambda: {n for n, _ in cloud.stored()} == set(ids), 60, "telemetry from every node")
    sha = cloud.add_blob(v2)
    m = p.build_manifest(FLEET_KEY, "fleet", "d-esp", "sine", 2, v2, 1024, esp32_models.golden(v2))
    cloud.add_event("deployment", {"deployment": "d-esp", "manifest": m, "nodes": ids,
                                   "blob_url": p.BLOB_PATH.format(sha256=sha), "node_manifests": {}})

    def updated():
        return {s["node"] for s in cloud.records("ota_state") if s["deployment"] == "d-esp" and s["state"] == p.UPDATED}

    t0 = time.monotonic()
    step_until(lambda: updated() == set(ids), 120, "3 ESP32 nodes UPDATED")
    states = [s["state"] for s in cloud.records("ota_state") if s["node"] == "esp32-1"]
    print(f"esp32: 3 real nodes UPDATED {time.monotonic() - t0:.1f} s after the event; esp32-1 reported {states}; "
          f"{len(cloud.stored())} telemetry records stored")
    assert states[-1] == p.UPDATED and p.DOWNLOADING in states and p.VERIFIED in states
    assert cloud.blob_downloads() == 1
    assert gw.drops() == {}
    failed = [s for s in cloud.records("ota_state") if s["state"] == p.FAILED]
    assert not failed, failed
    for n in nodes:
        n.kill()
