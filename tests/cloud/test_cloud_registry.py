"""Model registry: import of committed folders, artifacts, blobs, promote/retire."""
import hashlib

import pytest

from cloud_msgs import GATEWAY, OPERATOR, VIEWER
from sqlalchemy import select

from cloud.models import ModelVersion


def test_import_and_list(cloud, model_root):
    models = cloud.get("/api/v1/models").json()
    assert [m["name"] for m in models] == ["sine"]
    sine = models[0]
    assert sine["active"] == 3 and [v["version"] for v in sine["versions"]] == [1, 2, 3]
    v1 = cloud.get("/api/v1/models/sine/1").json()
    blob = (model_root / "sine" / "1" / "model.tfmb").read_bytes()
    assert v1["status"] == "candidate" and v1["sha256"] == hashlib.sha256(blob).hexdigest()
    assert v1["sizes"]["model.tfmb"] == len(blob) and v1["source"] == "committed"
    assert v1["metrics"] == {"int8_mae_clean_grid": pytest.approx(0.06)}
    assert v1["lineage"] == {"parent_version": None, "data": "generated"}
    assert set(v1["artifacts"]) == {"int8.tflite", "model.tfmb", "report.json", "result.png"}
    assert cloud.get("/api/v1/models/sine/9").status_code == 404
    assert cloud.get("/api/v1/models/nope/1").status_code == 404
    assert cloud.get("/api/v1/models/sine/one").status_code == 422


def test_artifacts(cloud, model_root):
    r = cloud.get("/api/v1/models/sine/2/artifacts/result.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
    r = cloud.get("/api/v1/models/sine/2/artifacts/int8.tflite")
    assert r.content == (model_root / "sine" / "2" / "int8.tflite").read_bytes()
    assert cloud.get("/api/v1/models/sine/2/artifacts/secret.txt").status_code == 404
    assert cloud.get("/api/v1/models/sine/2/artifacts/..%2F1%2Fint8.tflite").status_code == 404
    assert cloud.get("/api/v1/models/sine/2/artifacts/x", role=GATEWAY).status_code == 403


def test_blob_by_sha(cloud, model_root):
    blob = (model_root / "sine" / "2" / "model.tfmb").read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    for role in (GATEWAY, VIEWER, OPERATOR):
        r = cloud.client.get(f"/api/v1/blobs/{sha}", headers=role)
        assert r.status_code == 200 and r.content == blob
    assert cloud.client.get(f"/api/v1/blobs/{sha}").status_code == 401
    assert cloud.client.get("/api/v1/blobs/" + "0" * 64, headers=GATEWAY).status_code == 404
    assert cloud.client.get("/api/v1/blobs/xyz", headers=GATEWAY).status_code == 422


def test_promote_retire_and_rejected(cloud):
    r = cloud.post("/api/v1/models/sine/2/promote")
    assert r.status_code == 200 and r.json()["status"] == "active"
    statuses = {v["version"]: v["status"] for v in cloud.get("/api/v1/models").json()[0]["versions"]}
    assert statuses == {1: "candidate", 2: "active", 3: "retired"}
    assert cloud.post("/api/v1/models/sine/2/promote", role=VIEWER).status_code == 403
    assert cloud.post("/api/v1/models/sine/1/retire").json()["status"] == "retired"
    with cloud.db.session() as s:
        s.scalar(select(ModelVersion).where(ModelVersion.version == 1)).status = "rejected"
    assert cloud.post("/api/v1/models/sine/1/promote").status_code == 409
    assert cloud.post("/api/v1/models/sine/1/retire").status_code == 409
    assert cloud.post("/api/v1/models/sine/7/promote").status_code == 404
