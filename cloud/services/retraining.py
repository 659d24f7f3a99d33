"""One retraining job, run by the worker process: gather recent field data, train with the
training pipeline (pluggable entry point, settings.trainer), check the candidate on a
held-out set and against the active version, register it as candidate or rejected.

Field data for `anomaly` are the `features` of the site's recent telemetry, taken as the
site's new normal (the drift rule fires when a site's false-alarm rate jumped). They are
mixed with the recipe's generated normal windows (so other machines are not forgotten);
the held-out set is every fifth pair of field windows (positions 8 and 9 of every 10)
plus the recipe's held-out normal and faulty windows, so a model that learned faults as
normal fails its AUC check. The split interleaves in time because the drift is the newest
data: a newest-20% hold-out left the training share almost all pre-drift windows (224 of
320 in the demo), and the retrained model missed the new surroundings in one run of two."""
from __future__ import annotations

import importlib
import traceback
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from cloud.models import Telemetry
from cloud.services import events, jobs, registry

MIN_FIELD_ROWS = 30


def trainer(settings):
    """(train_model, module) from settings.trainer = "package.module:function"."""
    mod_name, _, fn = settings.trainer.partition(":")
    mod = importlib.import_module(mod_name)
    return getattr(mod, fn or "train_model"), mod


def field_data(s, model: str, site: str | None, limit: int):
    """Features of the latest telemetry of `model` (at `site`), oldest first; the most common
    feature length only. Returns (x list, nodes)."""
    q = select(Telemetry.features, Telemetry.node).where(Telemetry.model == model, Telemetry.features.is_not(None))
    if site:
        q = q.where(Telemetry.site == site)
    rows = list(s.execute(q.order_by(Telemetry.ts.desc(), Telemetry.seq.desc()).limit(limit)))[::-1]
    rows = [(f, n) for f, n in rows if isinstance(f, list) and f]
    if not rows:
        return [], []
    width = Counter(len(f) for f, _ in rows).most_common(1)[0][0]
    rows = [(f, n) for f, n in rows if len(f) == width]
    return [f for f, _ in rows], sorted({n for _, n in rows})


def _anomaly_sets(x_field, settings):
    """(train dict for train_model, held-out x, held-out y, description)."""
    import numpy as np
    from training.recipes import load_data
    x_field = np.asarray(x_field, np.float32)
    n = len(x_field)
    slot = np.arange(n) % 10  # interleaved in time: 0-6 train, 7 validation, 8-9 held out
    f_tr, f_val, f_hold = x_field[slot < 7], x_field[slot == 7], x_field[slot >= 8]
    base = load_data("anomaly", settings.train_seed, small=settings.train_small)
    gx_tr, gx_val = base["train"][0], base["val"][0]
    gx_te, gy_te = base["test"]
    if gx_tr.shape[1] != x_field.shape[1]:
        raise ValueError(f"field features have {x_field.shape[1]} values, the recipe's {gx_tr.shape[1]}")
    # Field windows are few next to the generated ones: repeat them up to about a third
    # of the generated set, or the autoencoder barely learns the new surroundings.
    reps = max(1, round(len(gx_tr) / 3 / max(1, len(f_tr))))
    x_tr = np.concatenate([gx_tr] + [f_tr] * reps)
    x_val = np.concatenate([gx_val, f_val])
    x_hold = np.concatenate([f_hold, gx_te])
    y_hold = np.concatenate([np.zeros(len(f_hold)), gy_te])
    data = {"train": (x_tr, np.zeros(len(x_tr))), "val": (x_val, np.zeros(len(x_val))), "test": (x_hold, y_hold)}
    desc = (f"{len(f_tr)} field windows (x{reps}, +{len(f_val)} validation) and {len(gx_tr)} generated normal "
            f"windows; held out: {len(f_hold)} field windows (2 of every 10) + {len(gx_te)} generated "
            f"({int(gy_te.sum())} faulty)")
    return data, x_hold, y_hold, desc


def check(name: str, mod, candidate: Path, active: Path | None, x, y, settings) -> dict:
    """Held-out check and the no-regression check against the active version."""
    out: dict = {}
    held = mod.evaluate(name, candidate, x, y)
    if name == "anomaly":
        ok = (held.get("auc") is None or held["auc"] >= settings.min_auc) and \
             held.get("false_alarm_rate", 0.0) <= settings.max_false_alarm and \
             held.get("detection_rate", 1.0) >= settings.min_detection
        held["bars"] = {"auc": f">= {settings.min_auc}", "false_alarm_rate": f"<= {settings.max_false_alarm}",
                        "detection_rate": f">= {settings.min_detection}"}
    else:
        key = "mae" if name == "sine" else "accuracy"
        ok = key in held
    out["held_out"] = {**held, "passed": bool(ok)}
    if active is not None:
        cmp = mod.compare(name, candidate, active, x, y, margin=-settings.regress_margin)
        out["vs_active"] = {**cmp, "margin": settings.regress_margin, "passed": bool(cmp["candidate_better"])}
    out["passed"] = bool(out["held_out"]["passed"] and out.get("vs_active", {}).get("passed", True))
    return out


def run(db, settings, job_id: int) -> None:
    """Runs a claimed job to a final status; never raises."""
    def note(line=None, progress=None, **fields):
        with db.session() as s:
            jobs.note(s, job_id, line, progress, **fields)

    try:
        with db.session() as s:
            job = jobs.get(s, job_id)
            name, site = job.model, job.site
            act = registry.active(s, name)
            active_folder = Path(act.path) if act else None
            parent = act.version if act else None
            x_field, nodes = field_data(s, name, site, settings.job_data_limit)
            version = registry.next_version(s, name, Path(settings.data_dir) / "models")
        train, mod = trainer(settings)
        note(f"gathered {len(x_field)} field windows of {name!r} from {len(nodes)} nodes"
             + (f" at site {site}" if site else ""), 0.1)
        held_x = held_y = None
        if name == "anomaly":
            if len(x_field) < MIN_FIELD_ROWS:
                raise ValueError(f"not enough field data: {len(x_field)} windows with features, need {MIN_FIELD_ROWS}")
            data, held_x, held_y, desc = _anomaly_sets(x_field, settings)
            desc = f"field telemetry of {'site ' + site if site else 'all sites'} (nodes {', '.join(nodes[:10])}): " + desc
        else:
            data, desc = None, "the recipe's generated dataset (field telemetry carries no labels for this model)"
        note(f"training {name} v{version}: {desc}", 0.2)
        out_root = Path(settings.data_dir) / "models"
        epochs = settings.train_epochs or None
        folder = Path(train(name, epochs=epochs, seed=settings.train_seed, data=data, out_root=str(out_root),
                            version=version, progress=False, small=settings.train_small))
        note(f"trained and converted into {folder}", 0.8)
        if held_x is None:
            from training.recipes import load_data
            held_x, held_y = load_data(name, settings.train_seed + 1, small=settings.train_small)["test"]
        checks = check(name, mod, folder, active_folder, held_x, held_y, settings)
        status = "candidate" if checks["passed"] else "rejected"
        note(f"checks: held-out {'passed' if checks['held_out']['passed'] else 'FAILED'}"
             + (f", against v{parent} {'passed' if checks['vs_active']['passed'] else 'FAILED'}" if parent else "")
             + f" -> {status}", 0.95)
        with db.session() as s:
            mv = registry.register(s, name, version, folder, "retrained", status=status, parent=parent,
                                   data=desc, checks=checks, job_id=job_id)
            events.publish(s, events.STREAM, "model", registry.version_out(mv))
            jobs.note(s, job_id, f"registered {name} v{version} as {status}", 1.0,
                      status="succeeded" if status == "candidate" else "rejected", result_version=version,
                      finished=events.now_ms())
    except Exception as e:  # a failed job records why; the worker goes on
        tb = traceback.format_exc(limit=3).strip().splitlines()
        try:
            note(f"failed: {type(e).__name__}: {e}", None, status="failed", error=f"{type(e).__name__}: {e}",
                 finished=events.now_ms())
            note(tb[-1] if tb else None)
        except Exception:
            pass
