"""The dashboard feed GET /api/v1/stream: ?token= works (EventSource), events arrive live."""
import time

from cloud_msgs import GATEWAY, batch, heartbeat, telemetry


def test_stream_carries_telemetry_node_job_and_deployment_events(cloud, sse):
    cloud.ingest(batch(batch_id="old", heartbeats=[heartbeat("n-0")]))
    reader = sse(cloud.url + "/api/v1/stream?token=tv", {})
    time.sleep(0.3)                                   # the stream starts at "now": old events are not replayed
    t0 = time.time()
    cloud.ingest(batch(telemetry=[telemetry("n-1", i) for i in range(3)], heartbeats=[heartbeat("n-1")]))
    node = reader.next("node")
    assert node["data"]["id"] == "n-1" and node["data"]["online"] is True
    tele = reader.next("telemetry")
    assert time.time() - t0 < 1.0, "live within a second"
    assert [r["seq"] for r in tele["data"]["records"]] == [0, 1, 2] and tele["data"]["site"] == "plant-a"
    job = cloud.post("/api/v1/jobs", json={"model": "sine", "reason": "from the UI"}).json()
    assert reader.next("job")["data"]["id"] == job["id"]
    dep = cloud.post("/api/v1/deployments", json={"model": "sine", "version": 2, "target": {"nodes": ["n-1"]}}).json()
    assert reader.next("deployment")["data"]["id"] == dep["id"]
    assert reader.connects >= 1


def test_stream_needs_a_reader_token(cloud):
    assert cloud.client.get("/api/v1/stream").status_code == 401
    assert cloud.client.get("/api/v1/stream?token=tg").status_code == 403
    assert cloud.client.get("/api/v1/stream", headers=GATEWAY).status_code == 403
