"""Per-model recipes: which data, how to fit, how to score, which bar to meet.

A recipe is a plain object the pipeline in train.py drives; nothing here writes files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

MODELS = ("sine", "anomaly", "keyword", "weather", "iris")


@dataclass
class Recipe:
    name: str
    arch: str
    epochs: int
    batch: int
    lr: float
    loss: str
    task: str                       # regression | autoencoder | classify | binary
    classes: list | None = None
    repeat: int = 1                 # passes over the data per Keras epoch (cuts epoch overhead)
    candidates: int = 1             # seeds tried; the smallest int8-vs-float gap on *validation* wins
    per_channel: bool = True        # int8.tflite's weight quantization; the other one is reported beside it
    bars: dict = field(default_factory=dict)
    arch_kw: dict = field(default_factory=dict)
    train_kw: dict = field(default_factory=dict)   # training-only layers (e.g. activation noise)


RECIPES = {
    # per-tensor: a 588 B blob instead of 752 B; activation noise and the candidates keep its gap small
    "sine": Recipe("sine", "sine", 300, 64, 0.01, "mse", "regression", candidates=4, per_channel=False,
                   train_kw={"noise": 0.05},
                   bars={"int8_mae_clean_grid": ("<=", 0.08), "int8_float_gap": ("<=", 0.01)}),
    "anomaly": Recipe("anomaly", "anomaly", 60, 32, 0.003, "mse", "autoencoder", ["normal", "anomalous"],
                      repeat=2, bars={"int8_auc_seen": (">=", 0.95), "int8_auc_unseen": (">=", 0.85)}),
    "keyword": Recipe("keyword", "keyword", 30, 64, 0.005, "sparse_categorical_crossentropy", "classify",
                      None, bars={"int8_top1_heldout_voices": (">=", 0.90)}),
    "weather": Recipe("weather", "weather", 15, 64, 0.005, "sparse_categorical_crossentropy", "classify",
                      None, bars={"int8_acc_heldout_weeks": (">=", 0.90), "int8_acc_heldout_station": (">=", 0.85)}),
    # trained by train.fit_iris: full batch (`batch` unused), epochs x repeat steps, L2 by inner CV
    "iris": Recipe("iris", "iris_b", 300, 80, 0.02, "binary_crossentropy", "binary", ["versicolor", "virginica"],
                   repeat=10, bars={"int8_acc_20_splits_best_net": (">=", 0.95)}),
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; one of {', '.join(MODELS)}")
    r = RECIPES[name]
    if name == "keyword":
        from training.datasets.keyword import CLASSES
        r.classes = list(CLASSES)
    if name == "weather":
        from training.datasets.weather import CLASSES
        r.classes = list(CLASSES)
    return r


def _from_arrays(data, name: str) -> dict:
    """Caller-supplied features: {'train','val','test': (x, y)} or (x, y) split 70/15/15 in order.

    For anomaly, y is 0 for normal windows (labelled by operators) and 1 for anomalous;
    only normal windows are trained on, anomalous ones all go to test."""
    if isinstance(data, dict) and "train" in data:
        out = {k: (np.asarray(v[0], np.float32), np.asarray(v[1])) for k, v in data.items() if k in
               ("train", "val", "test")}
        if "val" not in out or "test" not in out:
            raise ValueError("data dict needs 'train', 'val' and 'test' splits")
        return out
    if isinstance(data, dict):
        x, y = data["x"], data["y"]
    else:
        x, y = data
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if len(x) != len(y) or len(x) < 10:
        raise ValueError(f"need at least 10 labelled rows with len(x) == len(y), got {len(x)} and {len(y)}")
    if name == "anomaly":
        normal, bad = x[y == 0], x[y != 0]
        a, b = int(0.7 * len(normal)), int(0.85 * len(normal))
        return {"train": (normal[:a], np.zeros(a)), "val": (normal[a:b], np.zeros(b - a)),
                "test": (np.concatenate([normal[b:], bad]),
                         np.concatenate([np.zeros(len(normal) - b), np.ones(len(bad))]))}
    a, b = int(0.7 * len(x)), int(0.85 * len(x))
    return {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}


def load_data(name: str, seed: int = 0, data=None, small: bool = False) -> dict:
    """Splits for `name`: 'train', 'val', 'test' plus extra held-out sets and a 'groups' note.

    `data`: None (generated), a directory (bring your own, anomaly/keyword), or arrays."""
    if data is not None and not isinstance(data, (str, Path)):
        return {**_from_arrays(data, name), "groups": {"source": "arrays"}}
    if data is not None and name not in ("anomaly", "keyword"):
        raise ValueError(f"--data DIR is supported for anomaly and keyword, not {name}")
    if name == "sine":
        from training.datasets import sine
        return {**sine.make(seed, n=300 if small else 1000), "grid": sine.clean_grid(), "groups": {}}
    if name == "iris":
        from training.datasets import iris
        return {**iris.make(seed), "groups": {"splits": "20 random 80/20 splits for the bar"}}
    if name == "weather":
        from training.datasets import weather
        d = weather.make(seed, weeks=6 if small else 40)
        return {"train": d["train"][:2], "val": d["val"][:2], "test": d["test_weeks"][:2],
                "test_station": d["test_station"][:2], "groups": {"held_out_station": d["held_out_station"]}}
    if name == "anomaly":
        from training.datasets import vibration
        if data is not None:
            d = vibration.load_dir(data, seed)
        else:
            d = vibration.make(seed, n_normal=120, n_fault=20, n_unseen=40) if small else vibration.make(seed)
        out = {"train": d["train"][:2], "val": d["val"][:2], "test": d["test_seen"][:2], "groups": d["machines"]}
        if "test_unseen" in d:
            out["test_unseen"] = d["test_unseen"][:2]
        return out
    if name == "keyword":
        from training.datasets import keyword
        if data is not None:
            d = keyword.load_dir(data, seed)
            return {"train": d["train"][:2], "val": d["val"][:2], "test": d["test"][:2],
                    "classes": d["classes"], "groups": {"source": str(data)}}
        d = keyword.make(seed, n_accents=1 if small else 4, copies=1 if small else 2,
                         n_variants=25 if small else None)
        voices = {k: sorted({v.split("+", 1)[1] for v in d[k][2]}) for k in ("train", "val", "test")}
        return {"train": d["train"][:2], "val": d["val"][:2], "test": d["test"][:2],
                "groups": {"test_voices": voices["test"], "val_voices": voices["val"],
                           "n_train_voices": len(voices["train"])}}
    raise ValueError(f"unknown model {name!r}")


def ae_score(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Anomaly score: mean squared reconstruction error per window."""
    return np.mean((np.asarray(x) - np.asarray(recon).reshape(np.shape(x))) ** 2, axis=1)


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, score)) if len(set(np.asarray(y).tolist())) == 2 else None


def metrics(r: Recipe, predict: Callable, d: dict, prefix: str, threshold: float | None = None) -> dict:
    """Held-out metrics of one runtime (`predict`: float x -> float output)."""
    m: dict = {}
    if r.task == "regression":
        gx, gy = d["grid"]
        pg = predict(gx)
        m[f"{prefix}_mae_clean_grid"] = float(np.mean(np.abs(pg - gy)))
        m[f"{prefix}_mse_test"] = float(np.mean((predict(d["test"][0]) - d["test"][1]) ** 2))
    elif r.task == "autoencoder":
        for split, key in (("test", "seen"), ("test_unseen", "unseen")):
            if split in d:
                x, y = d[split]
                s = ae_score(x, predict(x))
                m[f"{prefix}_auc_{key}"] = auc(y, s)
                if threshold is not None:
                    m[f"{prefix}_false_alarm_rate_{key}"] = float(np.mean(s[y == 0] > threshold))
                    if np.any(y == 1):
                        m[f"{prefix}_detection_rate_{key}"] = float(np.mean(s[y == 1] > threshold))
    elif r.task == "classify":
        names = {"test": "heldout_voices" if r.name == "keyword" else "heldout_weeks" if r.name == "weather"
                 else "test", "test_station": "heldout_station"}
        for split, key in names.items():
            if split in d:
                x, y = d[split]
                acc = float(np.mean(np.argmax(predict(x), axis=1) == y))
                m[f"{prefix}_{'top1' if r.name == 'keyword' else 'acc'}_{key}"] = acc
    elif r.task == "binary":
        x, y = d["test"]
        m[f"{prefix}_acc_test"] = float(np.mean((predict(x).reshape(-1) > 0.5) == (y.reshape(-1) > 0.5)))
    return m
