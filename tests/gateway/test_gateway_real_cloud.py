"""The gateway against the real cloud service (`tinyfleet cloud serve`), not only the
contract server: telemetry and statuses arrive, a SIGKILLed gateway still stores once."""
import json
import subprocess
import time
import urllib.request

import pytest

from gw_harness import SITE, TINYFLEET, TOKEN, client, telemetry_payload, wait_for
from contract import protocol as p
from sim_nodes import Publishers
from tinyfleet.broker import free_port, wait_port

pytest.importorskip("cloud.app")
VIEWER = "viewer-token"


@pytest.fixture
def real_cloud(tmp_path):
    port = free_port()
    env = {"TINYFLEET_TOKENS": f"gateway:{TOKEN},viewer:{VIEWER}", "PATH": "/usr/bin:/bin"}
    log = open(tmp_path / "real-cloud.log", "wb")
    proc = subprocess.Popen(TINYFLEET + ["cloud", "serve", "--port", str(port), "--data", str(tmp_path / "cloud"),
                                         "--no-worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 60)
    except TimeoutError:
        proc.kill()
        pytest.fail("tinyfleet cloud serve did not start:\n" + (tmp_path / "real-cloud.log").read_text())
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(20)


def stored(url: str, node: str) -> list[int]:
    req = urllib.request.Request(f"{url}/api/v1/telemetry?node={node}&limit=5000",
                                 headers={"Authorization": "Bearer " + VIEWER})
    return [r["seq"] for r in json.loads(urllib.request.urlopen(req, timeout=10).read())]


def test_real_cloud_stores_telemetry_exactly_once_across_a_gateway_kill(mosquitto, real_cloud, gateway_factory):
    gw = gateway_factory(mosquitto.url, real_cloud).start()
    c = client(mosquitto.port, "node-1")
    c.publish(p.topic(SITE, "node-1", p.TELEMETRY), telemetry_payload("node-1", [1, 2, 3]), qos=1).wait_for_publish(5)
    wait_for(lambda: stored(real_cloud, "node-1") == [1, 2, 3] or None, 15, "3 records in the real cloud")

    pubs = Publishers(mosquitto.port, n=4, rate_per_node=50).start(seconds=5)
    time.sleep(2)
    gw.kill()
    time.sleep(0.5)
    gw.start()
    sent = pubs.join()
    nodes = sorted({n for n, _ in sent})

    def all_there():
        got = {n: stored(real_cloud, n) for n in nodes}
        return got if sum(len(v) for v in got.values()) >= len(sent) else None

    got = wait_for(all_there, 60, f"{len(sent)} records in the real cloud", step=1.0)
    for n in nodes:
        assert sorted(got[n]) == sorted(s for m, s in sent if m == n)     # each once, none missing
    assert gw.drops() == {}


def test_a_record_the_cloud_refuses_is_isolated_dropped_and_counted(mosquitto, real_cloud, gateway_factory):
    """The cloud refuses whole batches (never a partial store); records that pass the contract but
    not the cloud's database limits (ts after 9999, seq past 2**63 - 1) must not block the ones
    around them. A NaN score is not JSON: the gateway's decoder drops it before the cloud."""
    gw = gateway_factory(mosquitto.url, real_cloud).start()
    c = client(mosquitto.port, "node-1")
    good = [p.telemetry("node-1", [dict(item, seq=s)]) for s, item in
            ((s, {"ts": 1795400000000, "model": "sine", "model_version": 1, "result": 0.5, "score": 0.1}) for s in range(1, 9))]
    far_future = p.telemetry("node-1", [dict(good[0]["items"][0], seq=100, ts=10**15)])
    huge_seq = p.telemetry("node-1", [dict(good[0]["items"][0], seq=2**63)])
    nan_score = b'{"v":1,"node":"node-1","items":[{"seq":101,"ts":1795400000000,"model":"sine",' \
                b'"model_version":1,"result":0.5,"score":NaN}]}'
    payloads = [json.dumps(m).encode() for m in good[:4]] + [json.dumps(far_future).encode(), nan_score, json.dumps(huge_seq).encode()] + \
               [json.dumps(m).encode() for m in good[4:]]
    for data in payloads:                       # fast enough to share one ingest batch
        c.publish(p.topic(SITE, "node-1", p.TELEMETRY), data, qos=1)
    wait_for(lambda: sorted(stored(real_cloud, "node-1")) == list(range(1, 9)) or None, 30, "the 8 good records")
    wait_for(lambda: gw.drops() == {"cloud_rejected": 2, "bad_json": 1} or None, 10, "2 cloud_rejected, 1 bad_json")
    assert gw.metric("tinyfleet_gateway_queue_depth") == 0
