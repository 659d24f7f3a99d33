"""Model registry: imports artifact folders `<root>/<name>/<version>/` (int8.tflite,
model.tfmb, report.json, *.png written by training/train.py), keeps each version's
status (candidate | active | retired | rejected) and lineage, serves artifacts."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.models import ModelVersion
from cloud.services import ServiceError, events

BLOB = "model.tfmb"
TFLITE = "int8.tflite"
REPORT = "report.json"
STATUSES = ("candidate", "active", "retired", "rejected")


class RegistryError(ServiceError):
    pass


def _artifacts(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def read_report(folder: Path) -> dict:
    try:
        rep = json.loads((folder / REPORT).read_text())
        return rep if isinstance(rep, dict) else {}
    except (OSError, ValueError):
        return {}


def sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def register(s: Session, name: str, version: int, folder: Path, source: str, status: str = "candidate",
             parent: int | None = None, data: str | None = None, checks: dict | None = None,
             job_id: int | None = None) -> ModelVersion:
    """Adds (or refreshes the files of) one version; an existing row keeps its status."""
    folder = Path(folder).resolve()
    rep = read_report(folder)
    mv = s.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version))
    if mv is None:
        mv = ModelVersion(name=name, version=version, status=status, source=source, created=events.now_ms(),
                          parent_version=parent, data=data if data is not None else rep.get("data"),
                          checks=checks or {}, job_id=job_id)
        s.add(mv)
    mv.path = str(folder)
    mv.sha256 = sha256_of(folder / BLOB)
    mv.sizes = {f: (folder / f).stat().st_size for f in _artifacts(folder)}
    mv.metrics = rep.get("metrics", {}) if isinstance(rep.get("metrics"), dict) else {}
    s.flush()
    return mv


def scan(s: Session, roots: list[tuple[Path, str]]) -> int:
    """Imports every `<root>/<name>/<digits>/` folder with a blob; the newest version of a
    model becomes active when the model has no active version yet."""
    count = 0
    for root, source in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            versions = sorted((int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
                              and (p / BLOB).exists())
            for v, folder in versions:
                register(s, model_dir.name, v, folder, source)
                count += 1
            if versions and active(s, model_dir.name) is None:
                newest = get(s, model_dir.name, versions[-1][0])
                if newest.status == "candidate":
                    newest.status = "active"
    return count


def get(s: Session, name: str, version: int) -> ModelVersion | None:
    return s.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version))


def must_get(s: Session, name: str, version: int) -> ModelVersion:
    mv = get(s, name, version)
    if mv is None:
        raise RegistryError(404, f"model {name!r} has no version {version}")
    return mv


def active(s: Session, name: str) -> ModelVersion | None:
    return s.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.status == "active"))


def by_sha(s: Session, sha: str) -> ModelVersion | None:
    return s.scalars(select(ModelVersion).where(ModelVersion.sha256 == sha)).first()


def next_version(s: Session, name: str, folder_root: Path | None = None) -> int:
    from sqlalchemy import func
    top = s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)) or 0
    if folder_root is not None and (Path(folder_root) / name).is_dir():
        top = max([top] + [int(p.name) for p in (Path(folder_root) / name).iterdir() if p.name.isdigit()])
    return top + 1


def version_out(mv: ModelVersion) -> dict:
    return {"name": mv.name, "version": mv.version, "status": mv.status, "sha256": mv.sha256,
            "sizes": dict(mv.sizes or {}), "metrics": dict(mv.metrics or {}), "checks": dict(mv.checks or {}),
            "lineage": {"parent_version": mv.parent_version, "data": mv.data},
            "artifacts": sorted((mv.sizes or {}).keys()), "source": mv.source, "job_id": mv.job_id,
            "created": mv.created}


def list_models(s: Session) -> list[dict]:
    out: dict[str, dict] = {}
    for mv in s.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)):
        m = out.setdefault(mv.name, {"name": mv.name, "active": None, "versions": []})
        m["versions"].append(version_out(mv))
        if mv.status == "active":
            m["active"] = mv.version
    return list(out.values())


def artifact(mv: ModelVersion, filename: str) -> Path:
    """The file, only if it is one of the version's own artifacts (no path tricks)."""
    if filename not in (mv.sizes or {}) or "/" in filename or "\\" in filename:
        raise RegistryError(404, f"{mv.name} v{mv.version} has no artifact {filename!r}")
    path = Path(mv.path) / filename
    if not path.is_file():
        raise RegistryError(404, f"artifact {filename!r} is missing on disk")
    return path


def blob(mv: ModelVersion) -> bytes:
    return artifact(mv, BLOB).read_bytes()


def promote(s: Session, mv: ModelVersion) -> ModelVersion:
    if mv.status == "rejected":
        raise RegistryError(409, f"{mv.name} v{mv.version} was rejected by its checks and cannot be promoted")
    if mv.sha256 is None:
        raise RegistryError(409, f"{mv.name} v{mv.version} has no blob")
    for other in s.scalars(select(ModelVersion).where(ModelVersion.name == mv.name,
                                                      ModelVersion.status == "active")):
        if other.id != mv.id:
            other.status = "retired"
    mv.status = "active"
    s.flush()
    return mv


def retire(s: Session, mv: ModelVersion) -> ModelVersion:
    if mv.status == "rejected":
        raise RegistryError(409, f"{mv.name} v{mv.version} is rejected; it stays rejected")
    mv.status = "retired"
    s.flush()
    return mv


def golden(blob_bytes: bytes, count: int, seed: int = 0) -> list[tuple[bytes, bytes]]:
    """Golden vectors from the numpy reference runtime (bit-exact with TFLM): a few
    deterministic int8 inputs and the output bytes they give."""
    if count <= 0:
        return []
    import numpy as np
    from training.reference_runtime import Model
    m = Model(blob_bytes)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = rng.integers(-128, 128, size=m.input_size, dtype=np.int8)
        y = np.asarray(m.invoke(x), dtype=np.int8)
        out.append((x.tobytes(), y.tobytes()))
    return out
