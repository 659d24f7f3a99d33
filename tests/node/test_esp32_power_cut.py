"""Power cuts during OTA: at every flash mutation of an update (each chunk write,
each progress record, the pointer's tmp write and its rename = the slot switch),
plain and torn (half the data written). After each cut the node must boot with a
valid model, finish the update, and store at most one chunk twice (it resumes from
its last good chunk). Chunks of the request window that were in flight at the cut
may arrive again after the reboot: at most one window is delivered twice."""
import time

import pytest

from contract import blob as blobfmt
from contract import protocol as P
from conftest import KEY_HEX, SITE
from test_esp32_ota import CHUNK, manifest

WINDOW = 8  # chunks per ota/request (the config default ota_window)


def _update_with_cut(root, node_id, gateway, url, blobs, m, cut_at, torn):
    from node_firmware.sim.node import PowerCut, SimNode, install_blob, write_config
    write_config(root, node_id, SITE, url, "sine", KEY_HEX, sample_ms=100, trial_inferences=2, ota_timeout_ms=1000)
    install_blob(root, blobs["sine"][1])
    gateway.offer(node_id, m, blobs["sine"][2])
    received = stored = 0
    cut = None
    node = None
    try:
        node = SimNode(root, cut_at=cut_at, torn=torn)
        node.run(15, until=lambda: gateway.final(node_id, m["deployment"]) is not None)
    except PowerCut as e:
        cut = str(e)
        if node is not None:
            received, stored = node.ota.received, node.ota.stored
            node.kill()
    if cut is None:
        return node, None, (received, stored)
    node = SimNode(root)  # the reboot: must never fail
    active = open(root + "/models/" + ("slot_a", "slot_b")[node.node.slots.active()] + ".tfmb", "rb").read()
    blobfmt.parse(active)
    assert active in (blobs["sine"][1], blobs["sine"][2]), cut
    assert node.node.model_version in (1, 2)
    node.run(20, until=lambda: gateway.final(node_id, m["deployment"]) is not None)
    return node, cut, (received + node.ota.received, stored + node.ota.stored)


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_power_cut_at_every_flash_write(torn, blobs, gateway, mosquitto, tmp_path):
    from node_firmware.sim.node import install_blob, write_config, SimNode
    b2 = blobs["sine"][2]
    m = manifest(b2, 2)
    # a reference run counts the flash mutations of boot + update
    ref = str(tmp_path / "ref")
    write_config(ref, "ref", SITE, mosquitto.url, "sine", KEY_HEX, sample_ms=100, trial_inferences=2)
    install_blob(ref, blobs["sine"][1])
    gateway.offer("ref", m, b2)
    node = SimNode(ref)
    node.run(15, until=lambda: gateway.final("ref", m["deployment"]) is not None)
    assert gateway.final("ref", m["deployment"]) == (P.UPDATED, None)
    total = node.hal.fs.ops
    log = node.hal.fs.log
    node.kill()
    assert any(p.endswith("active.json") and op == "rename" for op, p in log)  # the switch is covered
    assert total >= 3 * P.chunk_count(len(b2), CHUNK)
    t0 = time.monotonic()
    cuts = 0
    for i in range(1, total + 1):
        if torn and log[i - 1][0] != "write":
            continue
        nid = "pc-%s-%d" % ("t" if torn else "c", i)
        node, cut, fetched = _update_with_cut(str(tmp_path / nid), nid, gateway, mosquitto.url, blobs, m, i, torn)
        assert gateway.final(nid, m["deployment"]) == (P.UPDATED, None), (i, cut, gateway.states_of(nid, m["deployment"]))
        assert node.node.model_version == 2
        if cut is not None:
            cuts += 1
            delivered, stored = fetched
            assert stored - len(b2) <= CHUNK, (i, cut, stored)
            assert delivered - len(b2) <= CHUNK * WINDOW, (i, cut, delivered)
        node.kill()
    assert cuts >= total // 2 if not torn else cuts > 0
    print("%d cut points, %d cuts, %.1f s" % (total, cuts, time.monotonic() - t0))
