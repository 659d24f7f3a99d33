"""Sites, nodes, telemetry queries, tags; health, metrics and the role matrix."""
import pytest
from cloud_msgs import GATEWAY, OPERATOR, VIEWER, batch, heartbeat, telemetry


def seed(cloud):
    recs = [telemetry("a-1", i, model="anomaly", result=1 if i < 3 else 0, ts=1795400000000 + i) for i in range(10)]
    recs += [telemetry("a-2", i, ts=1795400000000 + i) for i in range(5)]
    cloud.ingest(batch(telemetry=recs, heartbeats=[heartbeat("a-1", {"anomaly": 1}), heartbeat("a-2")]))
    cloud.ingest(batch(site="plant-b", gateway="gw-2", batch_id="b-2", heartbeats=[heartbeat("b-1")]))


def test_sites_and_node_lists(cloud, monkeypatch):
    seed(cloud)
    cloud.settings.anomaly_window_s = 1e9        # the seeded records carry fixed old timestamps
    sites = {s["id"]: s for s in cloud.get("/api/v1/sites").json()}
    assert sites["plant-a"]["nodes"] == 2 and sites["plant-a"]["online"] == 2 and sites["plant-a"]["gateway"] == "gw-1"
    assert sites["plant-a"]["anomaly_rate"] == pytest.approx(0.3)
    assert sites["plant-b"]["nodes"] == 1 and sites["plant-b"]["anomaly_rate"] is None
    nodes = cloud.get("/api/v1/nodes").json()
    assert [n["id"] for n in nodes] == ["a-1", "a-2", "b-1"]
    a1 = nodes[0]
    assert a1["anomaly_rate"] == pytest.approx(0.3) and a1["last_result"]["seq"] == 9 and a1["tags"] == []
    assert [n["id"] for n in cloud.get("/api/v1/nodes", params={"site": "plant-b"}).json()] == ["b-1"]
    assert [n["id"] for n in cloud.get("/api/v1/nodes", params={"model": "anomaly"}).json()] == ["a-1"]
    assert cloud.get("/api/v1/nodes", params={"site": "nowhere"}).json() == []


def test_node_detail_and_unknown_node(cloud):
    seed(cloud)
    d = cloud.get("/api/v1/nodes/a-2", params={"limit": 3}).json()
    assert [t["seq"] for t in d["telemetry"]] == [2, 3, 4]
    assert cloud.get("/api/v1/nodes/ghost").status_code == 404
    assert cloud.get("/api/v1/nodes/a-2", params={"limit": 0}).status_code == 422
    assert cloud.get("/api/v1/nodes/a-2", params={"limit": "many"}).status_code == 422


def test_patch_tags(cloud):
    seed(cloud)
    r = cloud.patch("/api/v1/nodes/a-1", json={"tags": ["line-2", "canary", "line-2"]})
    assert r.status_code == 200 and r.json()["tags"] == ["line-2", "canary"]
    assert cloud.get("/api/v1/nodes/a-1").json()["tags"] == ["line-2", "canary"]
    assert cloud.patch("/api/v1/nodes/a-1", json={"tags": ["x"]}, role=VIEWER).status_code == 403
    assert cloud.patch("/api/v1/nodes/a-1", json={"tags": ["x"]}, role=GATEWAY).status_code == 403
    assert cloud.patch("/api/v1/nodes/ghost", json={"tags": ["x"]}).status_code == 404
    for bad in ({"tags": "x"}, {"tags": [1]}, {}, {"tags": ["x"], "colour": 1}, {"tags": [""]}):
        assert cloud.patch("/api/v1/nodes/a-1", json=bad).status_code == 422, bad
    assert cloud.get("/api/v1/nodes/a-1").json()["tags"] == ["line-2", "canary"]


def test_telemetry_query(cloud):
    seed(cloud)
    rows = cloud.get("/api/v1/telemetry", params={"node": "a-1"}).json()
    assert [r["seq"] for r in rows] == list(range(10))
    rows = cloud.get("/api/v1/telemetry", params={"node": "a-1", "since": 1795400000007}).json()
    assert [r["seq"] for r in rows] == [7, 8, 9]
    rows = cloud.get("/api/v1/telemetry", params={"model": "sine", "limit": 2}).json()
    assert [(r["node"], r["seq"]) for r in rows] == [("a-2", 3), ("a-2", 4)]
    assert cloud.get("/api/v1/telemetry", params={"node": "ghost"}).json() == []
    for bad in ({"limit": 0}, {"limit": 5001}, {"since": -1}, {"since": "yesterday"}, {"since": 2**70}):
        assert cloud.get("/api/v1/telemetry", params=bad).status_code == 422, bad


def test_health_ready_metrics(cloud):
    seed(cloud)
    assert cloud.client.get("/healthz").json() == {"ok": True}
    assert cloud.client.get("/readyz").json() == {"ok": True}
    m = cloud.client.get("/metrics").text
    assert "tinyfleet_nodes_online 3.0" in m
    assert 'tinyfleet_deployments{state="running"} 0.0' in m and 'tinyfleet_jobs{status="queued"} 0.0' in m
    assert "tinyfleet_ingest_batch_seconds_count 2.0" in m


READS = ["/api/v1/sites", "/api/v1/nodes", "/api/v1/telemetry", "/api/v1/models", "/api/v1/jobs",
         "/api/v1/deployments", "/api/v1/nodes/x", "/api/v1/jobs/1", "/api/v1/deployments/d-x",
         "/api/v1/models/sine/1"]
ACTIONS = [("post", "/api/v1/jobs", {"model": "sine"}), ("patch", "/api/v1/nodes/x", {"tags": []}),
           ("post", "/api/v1/models/sine/1/promote", None), ("post", "/api/v1/models/sine/1/retire", None),
           ("post", "/api/v1/deployments", {}), ("post", "/api/v1/deployments/d-x/pause", None)]


def test_role_matrix(cloud):
    for path in READS:
        assert cloud.client.get(path).status_code == 401, path
        assert cloud.client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        assert cloud.client.get(path, headers={"Authorization": "Basic dG86dG8="}).status_code == 401, path
        assert cloud.client.get(path, headers=GATEWAY).status_code == 403, path
        assert cloud.client.get(path, headers=VIEWER).status_code != 403, path
    for method, path, body in ACTIONS:
        call = getattr(cloud.client, method)
        kw = {"json": body} if body is not None else {}
        assert call(path, **kw).status_code == 401, path
        assert call(path, headers=VIEWER, **kw).status_code == 403, path
        assert call(path, headers=GATEWAY, **kw).status_code == 403, path
        assert call(path, headers=OPERATOR, **kw).status_code not in (401, 403), path
    assert cloud.client.get("/api/v1/gateways/gw-1/events", headers=VIEWER).status_code == 403
    assert cloud.client.get("/api/v1/stream", headers=GATEWAY).status_code == 403
    assert cloud.client.get("/api/v1/stream", params={"token": "wrong"}).status_code == 401


def test_nul_in_query_is_refused(cloud):
    assert cloud.client.get("/api/v1/nodes?site=%00", headers=VIEWER).status_code == 422
    assert cloud.client.get("/api/v1/nodes/a%00b", headers=VIEWER).status_code == 422
