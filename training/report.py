"""The three PNG plots of an artifact folder: data split, loss curves, results (int8 on TFLM)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _fig(w=5.0, h=3.4):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(w, h), dpi=80)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _splits(d: dict) -> list[str]:
    return [k for k, v in d.items() if isinstance(v, tuple) and k != "grid"]


def plot_data(path: Path, name: str, d: dict, classes) -> None:
    plt, fig, ax = _fig()
    if name == "sine":
        for k, c in zip(("train", "val", "test"), ("C0", "C1", "C2")):
            ax.scatter(d[k][0][:, 0], d[k][1][:, 0], s=4, c=c, label=f"{k} ({len(d[k][0])})")
        ax.set_xlabel("x")
        ax.set_ylabel("y = sin x + noise")
    else:
        splits = _splits(d)
        if name == "anomaly":
            labels = ["normal", "anomalous"]
            counts = [[int(np.sum(np.asarray(d[k][1]) == c)) for k in splits] for c in (0, 1)]
        else:
            n = len(classes) if classes else int(max(np.max(d[k][1]) for k in splits)) + 1
            labels = classes or [str(i) for i in range(n)]
            counts = [[int(np.sum(np.asarray(d[k][1]).reshape(-1) == c)) for k in splits] for c in range(n)]
        bottom = np.zeros(len(splits))
        for lab, cnt in zip(labels, counts):
            ax.bar(splits, cnt, bottom=bottom, label=str(lab))
            bottom += cnt
        ax.set_ylabel("samples")
        ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"{name}: data split")
    ax.legend(fontsize=6, ncol=2)
    _save(plt, fig, path)


def plot_loss(path: Path, name: str, history: dict) -> None:
    plt, fig, ax = _fig()
    for k in ("loss", "val_loss"):
        if k in history:
            ax.plot(np.arange(1, len(history[k]) + 1), history[k], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(f"{name}: training / validation loss")
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def plot_result(path: Path, name: str, r, d: dict, float_predict, int8_predict, threshold, classes) -> None:
    from training.recipes import ae_score
    plt, fig, ax = _fig()
    if r.task == "regression":
        gx, gy = d["grid"]
        ax.plot(gx[:, 0], gy[:, 0], "k-", lw=1, label="sin x")
        ax.plot(gx[:, 0], float_predict(gx)[:, 0], "C0-", lw=1, label="float")
        ax.plot(gx[:, 0], int8_predict(gx)[:, 0], "C3.", ms=2, label="int8 (TFLM)")
        ax.set_title(f"{name}: predictions vs truth")
    elif r.task == "autoencoder":
        from sklearn.metrics import roc_curve
        for split in ("test", "test_unseen"):
            if split in d and len(set(d[split][1].tolist())) == 2:
                x, y = d[split]
                fpr, tpr, _ = roc_curve(y, ae_score(x, int8_predict(x)))
                ax.plot(fpr, tpr, label={"test": "seen machines", "test_unseen": "unseen machines"}[split])
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{name}: ROC, int8 on TFLM")
    else:
        x, y = d["test"]
        p = int8_predict(x)
        if r.task == "binary":
            pred, n = (p.reshape(-1) > 0.5).astype(int), 2
            y = (np.asarray(y).reshape(-1) > 0.5).astype(int)
        else:
            pred, n = np.argmax(p, axis=1), p.shape[1]
        cm = np.zeros((n, n), dtype=int)
        for t, q in zip(np.asarray(y).astype(int), pred):
            cm[t, q] += 1
        ax.imshow(cm, cmap="Blues")
        labels = classes or [str(i) for i in range(n)]
        ax.set_xticks(range(n), labels, rotation=60, fontsize=6)
        ax.set_yticks(range(n), labels, fontsize=6)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: confusion on test, int8 on TFLM", fontsize=9)
    if r.task in ("regression", "autoencoder"):
        ax.legend(fontsize=7)
    _save(plt, fig, path)


def write_plots(folder: Path, name: str, r, d: dict, history: dict, float_predict, int8_predict,
                threshold, classes) -> None:
    plot_data(Path(folder) / "data.png", name, d, classes)
    plot_loss(Path(folder) / "loss.png", name, history)
    plot_result(Path(folder) / "result.png", name, r, d, float_predict, int8_predict, threshold, classes)
