"""The reliability suite: one running system (private mosquitto, cloud, gateway, 100
simulated ESP32 nodes running the real firmware) broken on purpose, one fault after
another, with 10% of all messages lost on the nodes' radio links throughout:

  broker SIGKILLed and restarted -> cloud paused 60 s -> gateway SIGKILLed ->
  an OTA update with corrupted and lost chunks and nodes losing power mid-update.

After each fault: every node back online and every result the nodes produced
stored in the cloud exactly once, within a bound; after the OTA, every node on the
new model and its flash holding a valid one. Figures go to docs/reliability.md."""
import json
import shutil
import time
from pathlib import Path

import pytest

from node_firmware.sim import fleet
from node_firmware.sim.faults import NONE, Faults
from node_firmware.sim.umqtt import simple
from tinyfleet.bench_ota import sim_root, two_versions
from tinyfleet.stack import Stack

pytestmark = pytest.mark.slow

NODES = 100
SITE = "rel"
LINK = dict(drop=0.1, seed=7)   # 10% message loss on every node's radio link, either way
SETTLE_S = 90                   # the bound on getting back to steady state after a fault


class Field:
    def __init__(self, work):
        two_versions("sine", Path("models"), work / "models")
        self.stack = Stack(work, SITE, models=work / "models", cloud_env={"TINYFLEET_OTA_TIMEOUT_S": "240"}).start()
        self.root = sim_root("reliability")
        simple.FAULTS = Faults(**LINK)
        self.nodes = fleet.make_nodes(NODES, SITE, self.stack.broker.url, ["sine"], work / "models" / "nodes",
                                      self.stack.key, self.root, sample_ms=500,
                                      prefix="r-", batch=4, batch_ms=1000, ring=1024)
        self.stepper = fleet.Stepper(self.nodes, faults=simple.FAULTS).start()
        self.figures = {}

    def stop(self):
        simple.FAULTS = NONE
        self.stepper.stop()
        self.stack.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def stored(self, node):
        """(seqs, newest ts) of the node's results in the cloud."""
        rows = self.stack.http.get("/api/v1/telemetry", params={"node": node, "limit": 5000}).json()
        return [r["seq"] for r in rows], max((r["ts"] for r in rows), default=0)

    def settle(self, what, timeout=SETTLE_S):
        """Wait until every node is back (the cloud holds a result the node produced after
        the fault) and every result produced before now is stored; assert none is missing
        or stored twice. Returns the seconds it took. ("Back", not "connected": with 10 %
        of messages lost, a lost PUBACK makes a node reconnect, so at any instant a few of
        100 nodes are reconnecting.)"""
        t0, since = time.monotonic(), int(time.time() * 1000)
        produced = {n.node.node_id: n.node.seq.value for n in self.nodes}   # seqs below this exist
        offline, missing = [], {}
        while time.monotonic() - t0 < timeout:
            offline, missing = [], {}
            for node, upto in produced.items():
                seqs, newest = self.stored(node)
                assert len(seqs) == len(set(seqs)), f"{node}: a result stored twice"
                gap = set(range(upto)) - set(seqs)
                if gap:
                    missing[node] = sorted(gap)
                if newest < since:
                    offline.append(node)
            if not offline and not missing:
                took = round(time.monotonic() - t0, 1)
                self.figures[what] = {"settled_s": took, "results_checked": sum(produced.values()),
                                      "ring_dropped": sum(n.node.dropped for n in self.nodes)}
                assert self.figures[what]["ring_dropped"] == 0
                return took
            time.sleep(2.0)
        lost = sum(len(v) for v in missing.values())
        raise AssertionError(f"after {what}: not steady within {timeout} s: {len(offline)} nodes not back, "
                             f"{lost} results missing, e.g. {dict(list(missing.items())[:3])}")


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    f = Field(tmp_path_factory.mktemp("reliability"))
    try:
        f.settle("start")
        yield f
    finally:
        print("reliability figures:", json.dumps(f.figures))
        f.stop()


def test_broker_killed_and_restarted(field):
    time.sleep(5)
    field.stack.broker.kill()
    time.sleep(3)
    field.stack.broker.start()
    assert field.settle("broker SIGKILL, down 3 s") <= SETTLE_S


def test_cloud_paused_for_60_s(field):
    field.stack.cloud.pause()
    try:
        time.sleep(60)
        queued = field.stack.gateway_metric("tinyfleet_gateway_queue_depth")
        assert queued > 0, "the gateway should be holding the records the cloud could not take"
    finally:
        field.stack.cloud.resume()
    field.figures["cloud pause: records queued at the gateway"] = queued
    field.settle("cloud paused 60 s")


def test_gateway_sigkilled_and_restarted(field):
    time.sleep(5)
    field.stack.gateway.kill()
    time.sleep(2)
    field.stack.gateway.start().wait_healthy(60)
    field.settle("gateway SIGKILL")


def test_ota_with_corrupt_chunks_and_power_cuts(field):
    f = field.stack
    simple.FAULTS = field.stepper.faults = Faults(**LINK, chunkloss=0.1, corrupt=0.1, powercut=0.2)
    t0 = time.monotonic()
    dep = f.http.post("/api/v1/deployments", json={
        "model": "sine", "version": 2, "target": {"site": SITE}, "canary": 5,
        "wave": {"mode": "exponential", "size": 10, "interval_s": 1},
        "abort": {"failure_pct": 20, "min_nodes": 10}}).json()
    state = dep
    while time.monotonic() - t0 < 300 and state["state"] not in ("succeeded", "aborted", "canceled"):
        time.sleep(1.0)
        state = f.http.get(f"/api/v1/deployments/{dep['id']}").json()
    simple.FAULTS = field.stepper.faults = Faults(**LINK)
    took = round(time.monotonic() - t0, 1)
    field.figures["ota"] = {"state": state["state"], "seconds": took, "counts": state["counts"],
                            "power_cuts": field.stepper.power_cuts}
    assert state["state"] == "succeeded", state
    assert field.stepper.power_cuts > 0, "no node lost power during the update: the fault was not exercised"
    for n in field.nodes:
        assert n.node.model_version == 2, n.node.node_id
        got = n.node.slots.check(n.node.slots.active(), "sine")   # the active slot verifies on flash
        assert got is not None, f"{n.node.node_id}: active slot does not hold a valid model"
