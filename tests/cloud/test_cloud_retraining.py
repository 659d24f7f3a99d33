"""Retraining jobs: the API, the worker process, the drift rule, and end to end with the
real training pipeline: a drifted site gets a new version that passes its checks; a site
whose "normal" windows are really faults yields a rejected version that cannot ship."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from cloud_msgs import VIEWER, batch, heartbeat, telemetry


def test_jobs_api(cloud):
    cloud.ingest(batch(heartbeats=[heartbeat("n-1")]))
    r = cloud.post("/api/v1/jobs", json={"model": "sine", "site": "plant-a", "reason": "operator asked"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["trigger"] == "manual" and job["progress"] == 0
    assert cloud.get(f"/api/v1/jobs/{job['id']}").json()["log"][0].startswith("queued (manual)")
    assert [j["id"] for j in cloud.get("/api/v1/jobs").json()] == [job["id"]]
    assert cloud.post("/api/v1/jobs", json={"model": "nope"}).status_code == 422
    assert cloud.post("/api/v1/jobs", json={"model": "sine", "site": "nowhere"}).status_code == 422
    for bad in ({}, {"model": 3}, {"model": "sine", "site": 1}, {"model": "sine", "reason": None},
                {"model": "sine", "x": 1}, {"model": "a/b"}):
        assert cloud.post("/api/v1/jobs", json=bad).status_code == 422, bad
    assert cloud.post("/api/v1/jobs", json={"model": "sine"}, role=VIEWER).status_code == 403
    assert cloud.get("/api/v1/jobs/999").status_code == 404
    assert cloud.get("/api/v1/jobs/0").status_code == 422
    assert 'tinyfleet_jobs{status="queued"} 1.0' in cloud.client.get("/metrics").text


def test_drift_rule_is_rate_limited(cloud_factory):
    cloud = cloud_factory(drift_enabled=True, drift_threshold=0.5, drift_min_samples=20, drift_cooldown_s=3600)
    recs = [telemetry("n-1", i, model="anomaly", result=1 if i % 4 else 0) for i in range(40)]
    cloud.ingest(batch(telemetry=recs[:10]))
    time.sleep(0.5)
    assert cloud.get("/api/v1/jobs").json() == [], "too few samples"
    cloud.ingest(batch(batch_id="b-2", telemetry=recs[10:]))
    deadline = time.time() + 5
    while not (jobs := cloud.get("/api/v1/jobs").json()):
        assert time.time() < deadline, "the drift rule did not fire"
        time.sleep(0.05)
    assert jobs[0]["trigger"] == "drift" and jobs[0]["site"] == "plant-a" and "0.75" in jobs[0]["reason"]
    more = [telemetry("n-1", 100 + i, model="anomaly", result=1) for i in range(40)]
    cloud.ingest(batch(batch_id="b-3", telemetry=more))
    time.sleep(0.5)
    assert len(cloud.get("/api/v1/jobs").json()) == 1, "one job per site per cooldown"
    calm = [telemetry("m-1", i, model="anomaly", result=0) for i in range(40)]
    cloud.ingest(batch(site="plant-b", gateway="gw-2", batch_id="b-4", telemetry=calm))
    time.sleep(0.5)
    assert len(cloud.get("/api/v1/jobs").json()) == 1, "a calm site starts nothing"


def start_worker(cloud):
    env = {**os.environ, **cloud.settings.to_env()}
    proc = subprocess.Popen([sys.executable, "-m", "cloud.worker"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(os.getcwd()))
    return proc


def stop_worker(proc):
    proc.terminate()
    try:
        return proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def wait_job(cloud, job_id, timeout):
    deadline = time.time() + timeout
    while (job := cloud.get(f"/api/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.time() < deadline, f"job {job_id} still {job['status']}: {job['log']}"
        time.sleep(0.2)
    return job


def test_worker_records_a_failing_trainer(cloud_factory):
    cloud = cloud_factory(trainer="cloud_no_such_trainer:train")
    cloud.ingest(batch(heartbeats=[heartbeat("n-1")]))
    job = cloud.post("/api/v1/jobs", json={"model": "sine", "reason": "t"}).json()
    proc = start_worker(cloud)
    try:
        job = wait_job(cloud, job["id"], 60)
    finally:
        out = stop_worker(proc)
    assert job["status"] == "failed" and "cloud_no_such_trainer" in job["error"], out
    assert any("started by worker" in line and str(proc.pid) in line for line in job["log"])


# ------------------------------------------------------------------ end to end with real training

EPOCHS = 8


@pytest.fixture(scope="session")
def anomaly_root(tmp_path_factory):
    """models/anomaly/1: the base model, trained small by the real pipeline (a subprocess)."""
    root = tmp_path_factory.mktemp("anomaly_models")
    code = ("from training.train import train_model; "
            f"train_model('anomaly', epochs={EPOCHS}, seed=0, out_root={str(root)!r}, version=1, progress=False, small=True)")
    subprocess.run(["nice", sys.executable, "-c", code], check=True, capture_output=True, timeout=600)
    return root


def field_windows(machine_ids, n, speed=None, fault=None, seed=7):
    from training.datasets import vibration
    from training.features import vibration_features
    out = []
    for k, mid in enumerate(machine_ids):
        m = vibration.Machine(mid, seed)
        if speed:
            m.set_regime(speed=speed, load=1.0)
            m.wander = False
        if fault:
            m.set_fault(vibration.FAULTS[k % len(vibration.FAULTS)], 1.0)
        out.append(vibration_features(np.stack(list(m.windows(n)))))
    return out


def node_results(folder, x):
    """What a node computes: int8 model on the reference runtime, score = MSE, result = score > threshold."""
    import json
    from training.reference_runtime import Model
    model = Model((folder / "model.tfmb").read_bytes())
    thr = json.loads((folder / "report.json").read_text())["threshold"]
    out = []
    for row in x:
        q = np.clip(np.round(row / model.input_scale) + model.input_zero_point, -128, 127).astype(np.int8)
        y = (model.invoke(q).astype(np.float32) - model.output_zero_point) * model.output_scale
        score = float(np.mean((row - y) ** 2))
        out.append((1 if score > thr else 0, score))
    return out


def post_field(cloud, folder, site, gateway, nodes, windows, t0):
    for node, x in zip(nodes, windows):
        res = node_results(folder, x)
        recs = [{"node": node, "seq": i, "ts": t0 + i * 1000, "model": "anomaly", "model_version": 1,
                 "result": r, "score": s, "features": [float(v) for v in row]}
                for i, ((r, s), row) in enumerate(zip(res, x))]
        assert cloud.ingest(batch(site=site, gateway=gateway, batch_id=f"{node}-1", telemetry=recs,
                                  heartbeats=[heartbeat(node, {"anomaly": 1})])).status_code == 200
    return sum(r for x in windows for r, _ in node_results(folder, x)) / sum(len(x) for x in windows)


@pytest.mark.slow
def test_drift_retrains_and_broken_data_is_rejected(cloud_factory, anomaly_root):
    cloud = cloud_factory(models_dir=anomaly_root, drift_enabled=True, drift_threshold=0.3, drift_min_samples=60,
                          drift_window_s=1e9, train_small=True, train_epochs=EPOCHS)
    base = anomaly_root / "anomaly" / "1"
    assert cloud.get("/api/v1/models/anomaly/1").json()["status"] == "active"
    t0 = int(time.time() * 1000) - 600_000
    # plant-a: three new machines run faster and fully loaded -> the old model raises false alarms
    rate_a = post_field(cloud, base, "plant-a", "gw-1", ["a-0", "a-1", "a-2"],
                        field_windows([20, 21, 22], 70, speed=1.6), t0)
    # plant-b: its "normal" windows are really faults -> retraining on them must be refused
    rate_b = post_field(cloud, base, "plant-b", "gw-2", ["b-0", "b-1", "b-2"],
                        field_windows([30, 31, 32], 50, fault=True), t0)
    assert rate_a > 0.3 and rate_b > 0.3
    proc = start_worker(cloud)
    try:
        deadline = time.time() + 10
        while len(jobs := cloud.get("/api/v1/jobs").json()) < 2:
            assert time.time() < deadline, jobs
            time.sleep(0.1)
        by_site = {j["site"]: j for j in jobs}
        assert {j["trigger"] for j in jobs} == {"drift"}
        good = wait_job(cloud, by_site["plant-a"]["id"], 400)
        bad = wait_job(cloud, by_site["plant-b"]["id"], 400)
    finally:
        out = stop_worker(proc)
    assert good["status"] == "succeeded", (good, out[-3000:])
    assert good["progress"] == 1.0 and any("gathered 210 field windows" in line for line in good["log"])
    v = cloud.get(f"/api/v1/models/anomaly/{good['result_version']}").json()
    assert v["status"] == "candidate" and v["checks"]["passed"] is True and v["source"] == "retrained"
    assert v["lineage"]["parent_version"] == 1 and "site plant-a" in v["lineage"]["data"]
    print("drift candidate checks:", v["checks"])
    held = v["checks"]["held_out"]
    assert held["auc"] >= 0.85 and held["false_alarm_rate"] <= 0.2 and held["detection_rate"] >= 0.5
    cmp = v["checks"]["vs_active"]
    assert cmp["passed"] and cmp["candidate"]["false_alarm_rate"] < cmp["current"]["false_alarm_rate"]
    assert {"int8.tflite", "model.tfmb", "report.json"} <= set(v["artifacts"])

    assert bad["status"] == "rejected", (bad, out[-3000:])
    rv = cloud.get(f"/api/v1/models/anomaly/{bad['result_version']}").json()
    print("broken-data version checks:", rv["checks"])
    assert rv["status"] == "rejected" and rv["checks"]["passed"] is False
    assert rv["checks"]["held_out"]["passed"] is False           # it learned faults as normal: misses them
    # a rejected version can never ship nor be promoted
    r = cloud.post("/api/v1/deployments", json={"model": "anomaly", "version": bad["result_version"],
                                                "target": {"site": "plant-b"}})
    assert r.status_code == 409
    assert cloud.post(f"/api/v1/models/anomaly/{bad['result_version']}/promote").status_code == 409
    # the good candidate can
    r = cloud.post("/api/v1/deployments", json={"model": "anomaly", "version": good["result_version"],
                                                "target": {"site": "plant-a"}})
    assert r.status_code == 201, r.text
    assert cloud.get("/api/v1/deployments").json()[0]["version"] == good["result_version"]
