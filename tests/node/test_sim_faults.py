"""`node sim --faults`: the spec, the link faults in the simulated umqtt client, and a
node on a lossy link (30% of messages lost either way) that still gets every QoS 1
result through a real mosquitto, by reconnecting and resending."""
import subprocess
import sys

import pytest

from contract import protocol as P
from node_firmware.sim.faults import NONE, FaultError, Faults
from node_firmware.sim.umqtt import simple


def test_spec_parses_and_rejects_with_a_clear_error():
    f = Faults.parse("drop=0.1, delay=0.5,powercut=0.02,seed=3")
    assert (f.drop, f.delay, f.powercut, f.corrupt) == (0.1, 0.5, 0.02, 0.0) and bool(f)
    assert not Faults.parse("") and repr(NONE) == "none"
    for bad, says in [("drop", "NAME=VALUE"), ("lag=1", "NAME one of"), ("drop=x", "not a number"),
                      ("drop=1.5", "between 0 and 1"), ("disconnect=-1", "negative")]:
        with pytest.raises(FaultError, match=says):
            Faults.parse(bad)


def test_cli_refuses_a_bad_spec():
    out = subprocess.run([sys.executable, "-m", "tinyfleet", "node", "sim", "--faults", "drop=2"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "between 0 and 1" in out.stderr


def test_link_faults_lose_and_corrupt_at_the_asked_rates():
    f = Faults(drop=0.2, seed=1)
    lost = sum(f.inbound("telemetry", b"x") is None for _ in range(10000))
    assert 1800 < lost < 2200
    f = Faults(chunkloss=0.5, seed=1)
    assert all(f.inbound("ota/state", b"x") == b"x" for _ in range(100))   # chunks only
    frame = P.encode_chunk("ab" * 32, 0, bytes(range(200)))
    f = Faults(corrupt=1.0, seed=1)
    bad = f.inbound("ota/chunk", frame)
    assert len(bad) == len(frame) and sum(a != b for a, b in zip(bad, frame)) == 1
    with pytest.raises(P.ContractError):
        P.decode_chunk(bad)


def test_a_node_on_a_lossy_link_still_delivers_every_result(blobs, gateway, make_node):
    simple.FAULTS = Faults(drop=0.3, delay=0.05, seed=5)
    try:
        node = make_node("sine", blobs["sine"][1], sample_ms=10, batch=4, batch_ms=50)
        node.run(30, until=lambda: node.node.seq.value >= 120)
        last = node.node.seq.value
        node.run(30, until=lambda: {i["seq"] for i in gateway.telemetry["esp32-1"]} >= set(range(last)))
    finally:
        simple.FAULTS = NONE
    seqs = {i["seq"] for i in gateway.telemetry["esp32-1"]}
    assert set(range(last)) <= seqs, sorted(set(range(last)) - seqs)[:10]
    assert node.node.connects > 3        # lost PUBACKs made it reconnect, again and again
    assert node.node.dropped == 0 and not gateway.errors
