"""POST /api/v1/ingest: idempotent on (node, seq), one transaction, clear 4xx."""
import gzip
import json

import pytest
from cloud_msgs import GATEWAY, OPERATOR, VIEWER, batch, heartbeat, telemetry
from sqlalchemy import func, select

from cloud.models import Node, Telemetry
from contract import protocol


def count(cloud, model=Telemetry):
    with cloud.db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_ingest_stores_and_answers_counts(cloud):
    body = batch(telemetry=[telemetry("n-1", i) for i in range(10)], heartbeats=[heartbeat("n-1")],
                 statuses=[protocol.status("n-1", "online", 1795400000000)])
    r = cloud.ingest(body)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 10, "duplicates": 0}
    assert count(cloud) == 10
    node = cloud.get("/api/v1/nodes/n-1").json()
    assert node["site"] == "plant-a" and node["gateway"] == "gw-1" and node["board"] == "esp32"
    assert node["models"] == {"sine": 1} and node["online"] is True
    assert node["last_result"]["seq"] == 9 and len(node["telemetry"]) == 10


def test_every_column_reads_back_as_sent(cloud):
    """The insert bypasses SQLAlchemy's column types: the ORM must still read each value back."""
    from datetime import datetime, timezone
    recs = [telemetry("n-1", 1, model="anomaly", result=1, score=0.82, ts=1795400000123, features=[0.12, 3, -1e-7]),
            telemetry("n-1", 2, model="kws", result='say "yes" \u00e9', score=1, ts=1795400000999),
            telemetry("n-2", 2**62, model="sine", result=-0.25, score=0.5, ts=0)]
    assert cloud.ingest(batch(telemetry=recs)).json() == {"accepted": 3, "duplicates": 0}
    with cloud.db.session() as s:
        rows = {(t.node, t.seq): t for t in s.scalars(select(Telemetry))}
    for rec in recs:
        t = rows[(rec["node"], rec["seq"])]
        assert (t.ts, t.model, t.model_version, t.result, t.score) == (
            rec["ts"], rec["model"], rec["model_version"], rec["result"], rec["score"])
        assert t.features == rec.get("features") and t.batch_id == "b-1"
        assert t.time.replace(tzinfo=timezone.utc) == datetime.fromtimestamp(rec["ts"] / 1000, timezone.utc)
    assert [rows[("n-1", 1)].anomaly, rows[("n-1", 2)].anomaly] == [True, None]
    with cloud.db.session() as s:      # "no features" is SQL NULL, which the retraining query relies on
        assert s.scalar(select(func.count()).select_from(Telemetry).where(Telemetry.features.is_(None))) == 2


def test_duplicate_batch_is_counted_not_stored(cloud):
    body = batch(telemetry=[telemetry("n-1", i, ts=1795400000000 + i) for i in range(20)])
    assert cloud.ingest(body).json() == {"accepted": 20, "duplicates": 0}
    assert cloud.ingest(body).json() == {"accepted": 0, "duplicates": 20}
    overlap = batch(batch_id="b-2", telemetry=[telemetry("n-1", i, ts=1795400000000 + i) for i in range(15, 25)])
    assert cloud.ingest(overlap).json() == {"accepted": 5, "duplicates": 5}
    assert count(cloud) == 25
    metrics = cloud.client.get("/metrics").text
    assert 'tinyfleet_ingest_records_total{kind="telemetry"} 25.0' in metrics
    assert "tinyfleet_ingest_duplicates_total 25.0" in metrics


def test_stored_records_in_a_later_chunk_of_a_big_batch(cloud):
    """Rows go in 1,000 at a time; a chunk that meets stored (node, seq) is undone and done
    again to learn which: the chunks before it must stay, and the newest result must win."""
    ts = 1795400000000
    assert cloud.ingest(batch(telemetry=[telemetry("n-1", i, ts=ts + i) for i in range(1200, 1300)])).json() == \
        {"accepted": 100, "duplicates": 0}
    big = batch(batch_id="b-2", telemetry=[telemetry("n-1", i, ts=ts + i) for i in range(1500)])
    assert cloud.ingest(big).json() == {"accepted": 1400, "duplicates": 100}
    assert count(cloud) == 1500
    assert cloud.get("/api/v1/nodes/n-1").json()["last_result"]["seq"] == 1499


def test_repeat_inside_one_batch_is_a_duplicate(cloud):
    recs = [telemetry("n-1", 1), telemetry("n-1", 1), telemetry("n-2", 1)]
    assert cloud.ingest(batch(telemetry=recs)).json() == {"accepted": 2, "duplicates": 1}


def test_gzip_body(cloud):
    body = json.dumps(batch(telemetry=[telemetry("n-1", i) for i in range(100)])).encode()
    r = cloud.client.post("/api/v1/ingest", content=gzip.compress(body),
                          headers={**GATEWAY, "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.json() == {"accepted": 100, "duplicates": 0}


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b["telemetry"][1].update(seq="7"), "wrong_type"),
    (lambda b: b["telemetry"][1].update(score=True), "wrong_type"),
    (lambda b: b["telemetry"][1].pop("model"), "missing_field"),
    (lambda b: b["telemetry"][1].update(seq=-1), "bad_value"),
    (lambda b: b["telemetry"][1].update(seq=2**63), "bad_value"),
    (lambda b: b["telemetry"][1].update(seq=2**70), "must be int (64-bit)"),
    (lambda b: b["telemetry"][1].update(node="bad node!"), "bad_value"),
    (lambda b: b["telemetry"][1].update(features=["x"]), "wrong_type"),
    (lambda b: b["telemetry"][1].update(features=[0.0] * 513), "oversize"),
    (lambda b: b["telemetry"][1].update(colour="red"), "bad_value"),
    (lambda b: b.update(v=2), "bad_version"),
    (lambda b: b.update(site="a/b"), "bad_topic"),
    (lambda b: b.pop("gateway"), "missing_field"),
    (lambda b: b.update(telemetry={"node": "n-1"}), "wrong_type"),
    (lambda b: b["heartbeats"].append({"v": 1, "node": "n-1"}), "missing_field"),
    (lambda b: b["heartbeats"].append(heartbeat("n-1", models={"sine": "one"})), "bad_value"),
    (lambda b: b["statuses"].append({"v": 1, "node": "n-1", "state": "sleeping"}), "bad_value"),
    (lambda b: b["ota_states"].append(protocol.ota_state("n-1", "d-1", "sine", 2, "DONE")), "bad_value"),
    (lambda b: b["telemetry"][1].update(model="m" * 65), "bad_value"),
    (lambda b: b["telemetry"][1].update(result="a\x00b"), "bad_value"),
])
def test_bad_record_refuses_whole_batch(cloud, mutate, reason):
    body = batch(telemetry=[telemetry("n-1", 1), telemetry("n-1", 2)], heartbeats=[], statuses=[], ota_states=[])
    mutate(body)
    r = cloud.ingest(body)
    assert r.status_code == 422, r.text
    assert reason in r.json()["detail"]
    assert count(cloud) == 0 and count(cloud, Node) == 0


@pytest.mark.parametrize("raw, status", [
    (b"{not json", 422), (b"[1, 2]", 422), (b"", 422), (b'{"v": NaN}', 422), (b"\xff\xfe", 422)])
def test_undecodable_bodies(cloud, raw, status):
    r = cloud.client.post("/api/v1/ingest", content=raw, headers={**GATEWAY, "Content-Type": "application/json"})
    assert r.status_code == status, r.text


def test_bad_gzip_and_unknown_encoding(cloud):
    r = cloud.client.post("/api/v1/ingest", content=b"not gzip", headers={**GATEWAY, "Content-Encoding": "gzip"})
    assert r.status_code == 422
    r = cloud.client.post("/api/v1/ingest", content=b"{}", headers={**GATEWAY, "Content-Encoding": "br"})
    assert r.status_code == 415


def test_oversize_batch_is_413_and_stores_nothing(cloud):
    recs = [telemetry("n-1", i) for i in range(protocol.MAX_BATCH_RECORDS + 1)]
    r = cloud.ingest(batch(telemetry=recs))
    assert r.status_code == 413 and "5000" in r.json()["detail"]
    assert count(cloud) == 0
    ok = cloud.ingest(batch(telemetry=recs[:protocol.MAX_BATCH_RECORDS]))
    assert ok.json() == {"accepted": protocol.MAX_BATCH_RECORDS, "duplicates": 0}


def test_too_large_body_and_gzip_bomb(cloud_factory):
    cloud = cloud_factory(max_body_bytes=10_000, max_inflated_bytes=50_000)
    big = json.dumps(batch(telemetry=[telemetry("n-1", i) for i in range(200)])).encode()
    r = cloud.client.post("/api/v1/ingest", content=big, headers={**GATEWAY, "Content-Type": "application/json"})
    assert r.status_code == 413
    bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
    r = cloud.client.post("/api/v1/ingest", content=bomb, headers={**GATEWAY, "Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert count(cloud) == 0


def test_auth_on_ingest(cloud):
    body = batch(telemetry=[telemetry("n-1", 1)])
    assert cloud.client.post("/api/v1/ingest", json=body).status_code == 401
    assert cloud.client.post("/api/v1/ingest", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert cloud.client.post("/api/v1/ingest", json=body, headers=VIEWER).status_code == 403
    assert cloud.client.post("/api/v1/ingest", json=body, headers=OPERATOR).status_code == 403
    assert count(cloud) == 0


def test_offline_status_and_heartbeat_update_node(cloud):
    cloud.ingest(batch(heartbeats=[heartbeat("n-1", models={"sine": 1, "anomaly": 3})]))
    assert cloud.get("/api/v1/nodes/n-1").json()["online"] is True
    cloud.ingest(batch(batch_id="b-2", statuses=[protocol.status("n-1", "offline")]))
    node = cloud.get("/api/v1/nodes/n-1").json()
    assert node["online"] is False and node["models"] == {"sine": 1, "anomaly": 3}
    cloud.ingest(batch(batch_id="b-3", statuses=[protocol.status("n-1", "online")]))
    assert cloud.get("/api/v1/nodes/n-1").json()["online"] is True


def test_concurrent_replays_store_each_record_once(cloud):
    """Four gateways retrying the same batch at once: one copy stored, counts add up."""
    from concurrent.futures import ThreadPoolExecutor
    body = batch(telemetry=[telemetry(f"n-{i % 5}", i) for i in range(400)])
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: cloud.ingest(body), range(4)))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert sum(r.json()["accepted"] for r in answers) == 400
    assert sum(r.json()["duplicates"] for r in answers) == 1200
    assert count(cloud) == 400
