"""Staged OTA deployments, played end to end over real HTTP: the test is the gateway and
its nodes. It follows the gateway's SSE stream, verifies each manifest's HMAC, fetches
the blob, runs the manifest's golden vectors on the reference runtime (as a node's self
test does), and reports execution states back through /api/v1/ingest."""
import hashlib
import itertools
import time

import numpy as np
from cloud_msgs import FLEET_KEY, GATEWAY, NODE_KEY, VIEWER, batch, heartbeat
from sqlalchemy import select

from cloud.models import ModelVersion
from contract import protocol
from training.reference_runtime import Model

NODES = [f"n-{i}" for i in range(7)]
_batch_ids = itertools.count()


def fleet(cloud, nodes=NODES, site="plant-a", gateway="gw-1", version=1):
    hbs = [heartbeat(n, {"sine": version}) for n in nodes]
    assert cloud.ingest(batch(site=site, gateway=gateway, batch_id=f"hb-{next(_batch_ids)}", heartbeats=hbs)).status_code == 200


def report(cloud, node, dep, version, state, reason=None, model="sine"):
    st = protocol.ota_state(node, dep, model, version, state, reason=reason)
    r = cloud.ingest(batch(batch_id=f"ota-{next(_batch_ids)}", ota_states=[st]))
    assert r.status_code == 200, r.text


def node_checks(cloud, event) -> dict:
    """What a node does with an offer: HMAC, sha256 of the blob, golden vectors. -> {node: manifest}"""
    data = event["data"]
    out = {}
    blob = cloud.client.get(data["blob_url"], headers=GATEWAY).content
    for node in data["nodes"]:
        m = data["node_manifests"].get(node, data["manifest"])
        key = NODE_KEY if m["key"] == "node" else FLEET_KEY
        protocol.verify_manifest(m, bytes.fromhex(key))
        assert hashlib.sha256(blob).hexdigest() == m["sha256"] and len(blob) == m["size"]
        model = Model(blob)
        assert m["golden"], "manifests carry golden vectors"
        for x, y in protocol.golden_vectors(m):
            assert model.invoke(np.frombuffer(x, np.int8)).tobytes() == y
        out[node] = m
    return out


def play(cloud, reader, dep_id, fail=(), until_nodes=None, timeout=30.0):
    """Acts as gateway + nodes until every target node reached a final state."""
    seen, order = {}, []
    deadline = time.time() + timeout
    while until_nodes is None or set(seen) < set(until_nodes):
        assert time.time() < deadline, f"only {sorted(seen)} were offered"
        ev = reader.next("deployment", timeout=deadline - time.time())
        if ev["data"]["deployment"] != dep_id:
            continue
        offers = node_checks(cloud, ev)
        order.append(sorted(offers))
        for node, m in offers.items():
            seen[node] = m
            report(cloud, node, dep_id, m["version"], protocol.DOWNLOADING)
            if node in fail:
                report(cloud, node, dep_id, m["version"], protocol.FAILED, "self_test")
            else:
                report(cloud, node, dep_id, m["version"], protocol.UPDATED)
        d = cloud.get(f"/api/v1/deployments/{dep_id}").json()
        if until_nodes is None and d["state"] != "running":
            break
    return seen, order


def deploy(cloud, **over):
    body = {"model": "sine", "version": 2, "target": {"site": "plant-a"}, "canary": 1,
            "wave": {"mode": "constant", "size": 2, "interval_s": 0}, "abort": {"failure_pct": 30, "min_nodes": 3}}
    body.update(over)
    return cloud.post("/api/v1/deployments", json=body)


def events_url(cloud, gateway="gw-1"):
    return cloud.url + protocol.EVENTS_PATH.format(gateway=gateway)


def test_canary_then_waves_reach_every_node(cloud, sse):
    fleet(cloud, NODES + ["n-keyed"])
    reader = sse(events_url(cloud), GATEWAY)
    r = deploy(cloud)
    assert r.status_code == 201, r.text
    d = r.json()
    assert [w["size"] for w in d["waves"]] == [1, 2, 2, 2, 1] and d["waves"][0]["canary"] is True
    manifests, order = play(cloud, reader, d["id"], until_nodes=NODES + ["n-keyed"])
    assert order[0] == ["n-0"], "the canary goes out alone, first"
    assert all(len(o) <= 2 for o in order[1:])
    assert manifests["n-keyed"]["key"] == "node" and manifests["n-0"]["key"] == "fleet"
    assert all(m["version"] == 2 and m["rollback"] is False for m in manifests.values())
    deadline = time.time() + 10
    while cloud.get(f"/api/v1/deployments/{d['id']}").json()["state"] != "succeeded":
        assert time.time() < deadline
        time.sleep(0.1)
    d = cloud.get(f"/api/v1/deployments/{d['id']}").json()
    assert d["counts"] == {"UPDATED": 8} and d["failure_pct"] == 0
    assert all(w["finished"] == w["size"] for w in d["waves"])
    assert {n["id"]: n["models"]["sine"] for n in cloud.get("/api/v1/nodes").json()} == {n: 2 for n in NODES + ["n-keyed"]}
    assert 'tinyfleet_deployments{state="succeeded"} 1.0' in cloud.client.get("/metrics").text


def test_canary_holds_back_the_next_wave(cloud, sse):
    fleet(cloud)
    reader = sse(events_url(cloud), GATEWAY)
    d = deploy(cloud).json()
    first = reader.next("deployment")
    assert first["data"]["nodes"] == ["n-0"]
    time.sleep(0.5)
    assert reader.events.empty(), "no wave before the canary finished"
    report(cloud, "n-0", d["id"], 2, protocol.DOWNLOADING)
    time.sleep(0.3)
    assert reader.events.empty()
    t0 = time.time()
    report(cloud, "n-0", d["id"], 2, protocol.UPDATED)
    assert reader.next("deployment")["data"]["nodes"] == ["n-1", "n-2"]
    assert time.time() - t0 < 1.0, "the next wave reaches the gateway within a second"


def test_failures_abort_and_roll_back_updated_nodes(cloud, sse):
    fleet(cloud)
    reader = sse(events_url(cloud), GATEWAY)
    d = deploy(cloud, wave={"mode": "constant", "size": 2, "interval_s": 3}).json()
    play(cloud, reader, d["id"], fail={"n-1", "n-2"})
    d = cloud.get(f"/api/v1/deployments/{d['id']}").json()
    assert d["state"] == "aborted" and "failure rate 67% > 30%" in d["reason"]
    states = {n["node"]: (n["state"], n["reason"]) for n in d["nodes"]}
    assert states["n-1"] == ("FAILED", "self_test") and states["n-2"] == ("FAILED", "self_test")
    assert all(states[n] == ("CANCELED", "aborted") for n in ["n-3", "n-4", "n-5", "n-6"])
    assert d["rollback"] == d["id"] + "-rb"
    # the rollback: a signed manifest for the previous version, rollback true, to n-0 only
    ev = reader.next("deployment")
    assert ev["data"]["deployment"] == d["rollback"] and ev["data"]["nodes"] == ["n-0"]
    m = node_checks(cloud, ev)["n-0"]
    assert m["rollback"] is True and m["version"] == 1 and m["model"] == "sine"
    report(cloud, "n-0", d["rollback"], 1, protocol.UPDATED)
    d = cloud.get(f"/api/v1/deployments/{d['id']}").json()
    assert {n["node"]: n["state"] for n in d["nodes"]}["n-0"] == "ROLLED_BACK"
    assert cloud.get("/api/v1/nodes/n-0").json()["models"] == {"sine": 1}
    deadline = time.time() + 5
    while cloud.get(f"/api/v1/deployments/{d['rollback']}").json()["state"] != "succeeded":
        assert time.time() < deadline
        time.sleep(0.1)
    assert reader.events.empty(), "nodes after the abort were never offered the update"


def test_manual_abort_rolls_back_and_cancel_does_not(cloud, sse):
    fleet(cloud)
    reader = sse(events_url(cloud), GATEWAY)
    d = deploy(cloud, canary=0, wave={"mode": "exponential", "size": 1, "interval_s": 0.2}).json()
    assert [w["size"] for w in d["waves"]] == [1, 2, 4]
    ev = reader.next("deployment")
    report(cloud, ev["data"]["nodes"][0], d["id"], 2, protocol.UPDATED)
    ev2 = reader.next("deployment")
    assert ev2["data"]["nodes"] == ["n-1", "n-2"]
    r = cloud.post(f"/api/v1/deployments/{d['id']}/abort")
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    got = {reader.next()["event"] for _ in range(2)}
    assert got == {"cancel", "deployment"}                 # cancel n-1/n-2, roll back n-0
    assert cloud.post(f"/api/v1/deployments/{d['id']}/resume").status_code == 409
    assert cloud.post(f"/api/v1/deployments/{d['id']}/abort").status_code == 409
    assert deploy(cloud, canary=2).status_code == 409, "n-0 is still being rolled back"
    report(cloud, "n-0", d["id"] + "-rb", 1, protocol.UPDATED)
    d2 = deploy(cloud, canary=2).json()
    reader.next("deployment")
    r = cloud.post(f"/api/v1/deployments/{d2['id']}/cancel")
    assert r.json()["state"] == "canceled" and r.json()["rollback"] is None
    assert reader.next("cancel")["data"] == {"deployment": d2["id"], "nodes": ["n-0", "n-1"]}


def test_pause_and_resume(cloud, sse):
    fleet(cloud)
    reader = sse(events_url(cloud), GATEWAY)
    d = deploy(cloud).json()
    reader.next("deployment")
    assert cloud.post(f"/api/v1/deployments/{d['id']}/pause").json()["state"] == "paused"
    assert cloud.post(f"/api/v1/deployments/{d['id']}/pause").status_code == 409
    report(cloud, "n-0", d["id"], 2, protocol.UPDATED)
    time.sleep(0.5)
    assert reader.events.empty(), "a paused deployment sends no wave"
    assert cloud.post(f"/api/v1/deployments/{d['id']}/resume").json()["state"] == "running"
    assert reader.next("deployment")["data"]["nodes"] == ["n-1", "n-2"]


def test_silent_nodes_time_out(cloud_factory, sse):
    cloud = cloud_factory(ota_timeout_s=0.5)
    fleet(cloud, ["n-0", "n-1"])
    d = deploy(cloud, canary=0, wave={"mode": "constant", "size": 2, "interval_s": 0},
               abort={"failure_pct": 100, "min_nodes": 1}).json()
    report(cloud, "n-0", d["id"], 2, protocol.UPDATED)
    deadline = time.time() + 10
    while (d := cloud.get(f"/api/v1/deployments/{d['id']}").json())["state"] == "running":
        assert time.time() < deadline
        time.sleep(0.1)
    assert {n["node"]: (n["state"], n["reason"]) for n in d["nodes"]} == {"n-0": ("UPDATED", None),
                                                                         "n-1": ("FAILED", "timeout")}


def test_bad_deployment_requests(cloud):
    fleet(cloud)
    assert deploy(cloud, version=9).status_code == 404
    assert deploy(cloud, model="nope").status_code == 404
    assert deploy(cloud, version=3).status_code == 201          # v3, the active version
    with cloud.db.session() as s:
        s.scalar(select(ModelVersion).where(ModelVersion.version == 1)).status = "rejected"
    r = deploy(cloud, version=1)
    assert r.status_code == 409 and "rejected" in r.json()["detail"]
    assert deploy(cloud, target={"nodes": ["n-0", "ghost"]}).status_code == 422
    assert deploy(cloud, target={}).status_code == 422
    assert deploy(cloud, target={"site": "nowhere"}).status_code == 422
    assert deploy(cloud, target={"tags": ["none-has-it"]}).status_code == 422
    for bad in ({"version": "2"}, {"version": True}, {"canary": -1}, {"wave": {"mode": "fast"}},
                {"abort": {"failure_pct": 101}}, {"wave": {"size": 0}}, {"extra": 1}, {"target": "plant-a"}):
        assert deploy(cloud, **bad).status_code == 422, bad
    r = deploy(cloud, target={"nodes": ["n-0"]}, canary=1)
    assert r.status_code == 409 and "n-0" in r.json()["detail"], "n-0 is still in the v3 rollout"
    first = cloud.get("/api/v1/deployments").json()[0]["id"]
    cloud.post(f"/api/v1/deployments/{first}/cancel")
    assert deploy(cloud, target={"nodes": ["n-0"]}, canary=1).status_code == 201
    assert cloud.post("/api/v1/deployments/d-nope/pause").status_code == 404
    assert cloud.get("/api/v1/deployments/d-nope").status_code == 404
    assert len(cloud.get("/api/v1/deployments").json()) == 2
    r = cloud.client.post("/api/v1/deployments", headers=VIEWER, json={})
    assert r.status_code == 403


def test_tags_target_and_unknown_ota_states_are_ignored(cloud, sse):
    fleet(cloud)
    cloud.patch("/api/v1/nodes/n-3", json={"tags": ["line-2"]})
    cloud.patch("/api/v1/nodes/n-5", json={"tags": ["line-2", "x"]})
    reader = sse(events_url(cloud), GATEWAY)
    d = deploy(cloud, target={"site": "plant-a", "tags": ["line-2"]}, canary=0).json()
    assert sorted(n["node"] for n in d["nodes"]) == ["n-3", "n-5"]
    report(cloud, "n-3", "d-unknown", 2, protocol.UPDATED)      # unknown deployment: ignored
    report(cloud, "n-0", d["id"], 2, protocol.UPDATED)          # not a target: ignored
    report(cloud, "n-3", d["id"], 7, protocol.UPDATED)          # other version: ignored
    report(cloud, "n-3", d["id"], 2, protocol.UPDATED, model="other")
    assert cloud.get(f"/api/v1/deployments/{d['id']}").json()["counts"] == {"QUEUED": 2}
    assert reader.next("deployment")["data"]["nodes"] == ["n-3", "n-5"]


def test_gateway_stream_resumes_with_last_event_id(cloud):
    fleet(cloud)
    fleet(cloud, ["m-0"], site="plant-b", gateway="gw-2")
    d = deploy(cloud, canary=0, target={"nodes": ["n-0", "n-1", "m-0"]}, wave={"size": 3}).json()
    import httpx

    def read(headers, n):
        out = []
        with httpx.stream("GET", events_url(cloud), headers={**GATEWAY, **headers}, timeout=5) as r:
            ev = {}
            for line in r.iter_lines():
                if not line:
                    if ev:
                        out.append(ev)
                    ev = {}
                    if len(out) == n:
                        return out
                elif not line.startswith(":"):
                    k, _, v = line.partition(": ")
                    ev[k] = v
        return out

    first = read({}, 1)                 # replay of the running deployment's offer for gw-1
    assert first[0]["event"] == "deployment" and d["id"] in first[0]["data"] and "m-0" not in first[0]["data"]
    cloud.post(f"/api/v1/deployments/{d['id']}/cancel")
    nxt = read({"Last-Event-ID": first[0]["id"]}, 1)
    assert nxt[0]["event"] == "cancel" and int(nxt[0]["id"]) > int(first[0]["id"])
    d2 = deploy(cloud, canary=0, target={"nodes": ["n-1"]}).json()
    fresh = read({}, 1)                 # no Last-Event-ID: only offers of running deployments come back
    assert fresh[0]["event"] == "deployment" and d2["id"] in fresh[0]["data"] and d["id"] not in fresh[0]["data"]


def test_node_side_rollback_counts_as_failure(cloud, sse):
    fleet(cloud, ["n-0", "n-1", "n-2"])
    d = deploy(cloud, canary=0, wave={"mode": "constant", "size": 3, "interval_s": 0},
               abort={"failure_pct": 40, "min_nodes": 2}).json()
    report(cloud, "n-0", d["id"], 2, protocol.UPDATED)
    report(cloud, "n-1", d["id"], 2, protocol.UPDATED)
    assert cloud.get("/api/v1/nodes/n-1").json()["models"] == {"sine": 2}
    report(cloud, "n-1", d["id"], 2, protocol.ROLLED_BACK, "inference_errors")   # the node went back itself
    assert cloud.get("/api/v1/nodes/n-1").json()["models"] == {"sine": 1}
    d = cloud.get(f"/api/v1/deployments/{d['id']}").json()
    assert d["state"] == "aborted" and d["failure_pct"] == 50.0
    states = {n["node"]: (n["state"], n["reason"]) for n in d["nodes"]}
    assert states == {"n-0": ("UPDATED", None), "n-1": ("ROLLED_BACK", "inference_errors"),
                      "n-2": ("CANCELED", "aborted")}
    rb = cloud.get(f"/api/v1/deployments/{d['rollback']}").json()
    assert [n["node"] for n in rb["nodes"]] == ["n-0"] and rb["nodes"][0]["version"] == 1


def test_site_target_only_takes_nodes_running_the_model(cloud):
    """A weather station at the same site is no target for a sine model; explicit ids are taken as given."""
    fleet(cloud, nodes=["n-0", "n-1"])
    hb = [heartbeat("wx-1", {"weather": 1})]
    assert cloud.ingest(batch(site="plant-a", batch_id=f"hb-{next(_batch_ids)}", heartbeats=hb)).status_code == 200
    r = deploy(cloud, canary=1)
    assert r.status_code == 201, r.text
    assert sorted(n["node"] for n in r.json()["nodes"]) == ["n-0", "n-1"]
    r = deploy(cloud, model="sine", target={"site": "plant-b"})
    assert r.status_code == 422
