"""Train a model, quantize it to full int8, convert, check it on TFLM and write its artifacts.

Entry points (also used by the cloud's retraining worker):
- `train_model(name, epochs, seed, data, out_root, version, progress) -> Path` writes
  `out_root/<name>/<version>/` (keras, float/int8 .tflite, blob, C pair, report, plots);
- `evaluate(name, folder, x, y)` scores a trained int8 model on labelled features (TFLM);
- `compare(name, candidate, current, x, y)` says whether a candidate beats the current version.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from training import convert, export
from training.recipes import Recipe, ae_score, auc, load_data, metrics, recipe



def _next_version(base: Path) -> int:
    found = [int(p.name) for p in base.glob("*") if p.name.isdigit()]
    return max(found, default=0) + 1


def _packages() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for pkg in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "tflite-micro", "ai-edge-litert", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


class _Epochs:
    """A rich progress bar over epochs (a Keras callback built lazily to keep imports light)."""

    @staticmethod
    def make(label: str, total: int, enabled: bool):
        import keras

        class Bar(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.progress = None
                if enabled:
                    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
                    self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                             TimeElapsedColumn(), TextColumn("{task.fields[info]}"), transient=False)
                    self.progress.start()
                    self.task = self.progress.add_task(f"train {label}", total=total, info="")

            def on_epoch_end(self, epoch, logs=None):
                if self.progress is not None:
                    info = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items() if "loss" in k or "acc" in k)
                    self.progress.update(self.task, advance=1, info=info)

            def on_train_end(self, logs=None):
                if self.progress is not None:
                    self.progress.stop()

        return Bar()


def fit(r: Recipe, x, y, xv, yv, epochs: int, seed: int, progress: bool = False, arch: str | None = None,
        quiet_val: bool = False):
    """Train a fresh batch-open model; returns (batch-1 model with the weights, history dict)."""
    import keras
    import tensorflow as tf
    from training.models import build
    keras.utils.clear_session()  # layer names come from global counters and end up in the .tflite bytes
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()  # same seed, same bytes
    arch = arch or r.arch
    model = build(arch, batch=None, **r.arch_kw, **r.train_kw)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32 if r.task != "classify" else np.int64)
    ds = (tf.data.Dataset.from_tensor_slices((x, y)).cache()
          .shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat(r.repeat)
          .batch(r.batch).prefetch(2))
    steps = int(np.ceil(len(x) / r.batch)) * r.repeat
    sched = keras.optimizers.schedules.CosineDecay(r.lr, decay_steps=max(1, steps * epochs), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(sched), loss=r.loss,
                  metrics=["accuracy"] if r.task in ("classify", "binary") else None,
                  steps_per_execution=max(1, min(steps, 64)))
    val = None
    if xv is not None and not quiet_val:
        yv = np.asarray(yv, np.float32 if r.task != "classify" else np.int64)
        val = tf.data.Dataset.from_tensor_slices((np.asarray(xv, np.float32), yv)).batch(256).cache()
    h = model.fit(ds, validation_data=val, epochs=epochs, verbose=0, shuffle=False,
                  callbacks=[_Epochs.make(r.name, epochs, progress)])
    export_model = build(arch, batch=1, **r.arch_kw)
    export_model.set_weights(model.get_weights())
    return export_model, {k: [float(f"{v:.5g}") for v in vals] for k, vals in h.history.items()}


def _keras_predict(model):
    def predict(x):
        x = np.asarray(x, np.float32)
        return np.concatenate([model(x[i:i + 256], training=False).numpy() for i in range(0, len(x), 256)])
    return predict


def _open_batch(model, r: Recipe, arch: str | None = None):
    """The same weights in a batch-open model, for fast float evaluation."""
    from training.models import build
    m = build(arch or r.arch, batch=None, **r.arch_kw)
    m.set_weights(model.get_weights())
    return m


def _select(r: Recipe, model, history, d: dict, rep, epochs: int, seed: int, progress: bool):
    """Train `r.candidates` seeds; keep the one whose int8 model is closest to its float
    model on the validation set (among those within 10% of the best validation loss)."""
    xv, yv = d["val"]
    runs = [(seed, model, history)]
    for k in range(1, r.candidates):
        x_train, y_train = d["train"]
        m, h = fit(r, x_train, y_train, xv, yv, epochs, seed + 1000 * k, progress)
        runs.append((seed + 1000 * k, m, h))
    scored = []
    for s, m, h in runs:
        fv = _keras_predict(_open_batch(m, r))(xv)
        gap = float(np.mean(np.abs(convert.int8_predict(convert.to_tflite(m, rep, r.per_channel), xv) - fv)))
        scored.append({"seed": s, "val_loss": float(np.mean((fv - yv) ** 2)), "val_int8_float_gap": gap})
    best_loss = min(c["val_loss"] for c in scored)
    ok = [i for i, c in enumerate(scored) if c["val_loss"] <= 1.1 * best_loss]
    pick = min(ok, key=lambda i: scored[i]["val_int8_float_gap"])
    return runs[pick][1], runs[pick][2], {"candidates": scored, "picked_seed": scored[pick]["seed"]}


IRIS_L2 = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2)   # candidate weight decays, chosen per training set by inner CV
IRIS_FOLDS, IRIS_RESTARTS = 5, 4


def _train_copies(arch: str, x, y, masks, l2, steps: int, lr: float, seed: int):
    """Train len(masks) independent copies of an IRIS net in one loop, full batch.

    y holds the targets: one vector for all copies or one column per copy. Copy j fits the
    rows masks[j] selects, standardized with their own mean and spread (folded
    into its first layer afterwards, so nothing outside its rows shapes it), and minimises its
    own mean cross-entropy + l2[j] * sum of squared kernels. Returns per-copy weights (first axis
    = copy, `build(arch)` layout), the final objective per copy, the objective at every step
    (steps, copies) and every copy's probability for every row (rows, copies)."""
    import keras
    import tensorflow as tf
    from training.models import iris_stack
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    w = masks / masks.sum(1, keepdims=True)
    mu = w @ x
    sd = np.sqrt(np.maximum(w @ x ** 2 - mu ** 2, 0)) + 1e-6
    xs = tf.constant(((x[:, None, :] - mu) / sd).astype(np.float32))
    wt = tf.constant(w.T.astype(np.float32))
    yt = tf.constant((np.reshape(y, (-1, 1)) if np.ndim(y) == 1 else y).astype(np.float32))
    lam = tf.constant(np.asarray(l2, np.float32))
    stack = iris_stack(arch, len(masks))
    kernels = [layer.kernel for layer in stack.layers[1:]]
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.01))

    def objective():
        p = tf.clip_by_value(stack(xs)[..., 0], 1e-7, 1 - 1e-7)
        bce = -(yt * tf.math.log(p) + (1 - yt) * tf.math.log(1 - p))
        return tf.reduce_sum(wt * bce, 0) + lam * tf.add_n([tf.reduce_sum(k ** 2, [1, 2]) for k in kernels])

    @tf.function(jit_compile=True)  # XLA: all copies step in well under a millisecond
    def train():
        trace = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = objective()
                total = tf.reduce_sum(loss)  # copies share no weights: each gets its own gradient
            opt.apply_gradients(zip(tape.gradient(total, stack.trainable_variables), stack.trainable_variables))
            trace = trace.write(i, loss)
        return trace.stack(), objective()

    trace, final = train()
    weights = stack.get_weights()
    weights[1] = weights[1] - np.einsum("ki,kio->ko", mu / sd, weights[0])
    weights[0] = weights[0] / sd[:, :, None]
    return weights, final.numpy(), trace.numpy(), np.clip(stack(xs).numpy()[..., 0], 1e-7, 1 - 1e-7)


def fit_iris(arch: str, x, y, trains: list, seed: int, steps: int, lr: float) -> list:
    """One net per training set in `trains` (row indices into x, y), fitted on those rows alone.

    The nets learn the posterior of a linear discriminant (LDA) fitted on the same rows, not
    the hard labels: on 80 flowers LDA's shared-covariance Gaussians generalize best of the
    classic models (96.5% vs 94.5% for logistic regression over the bar's 20 splits), and a net
    fitted to hard labels lands on the logistic-regression boundary (94.0%).
    The L2 strength is the one with the lowest cross-entropy (against the hard labels) over 5
    stratified inner folds; of IRIS_RESTARTS random starts the one with the lowest training
    objective wins (a 2-unit relu layer can start dead: single-start training scored 30% on
    such splits). Every (training set, L2, fold, start) is one copy of one stacked model, so
    this is a single optimisation.
    Returns [(batch-1 Keras model, info)] in the order of `trains`."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold
    from training.models import build
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32).reshape(-1)
    copies, masks, targets = [], [], []
    for s, tr in enumerate(trains):
        inner = StratifiedKFold(IRIS_FOLDS, shuffle=True, random_state=seed + s).split(tr, y[tr])
        parts = [tr[a] for a, _ in inner] + [tr]  # 5 inner training folds, then all of tr
        teachers = [LinearDiscriminantAnalysis().fit(x[rows], y[rows]).predict_proba(x)[:, 1] for rows in parts]
        for l2 in IRIS_L2:
            for f, rows in enumerate(parts):
                for r in range(IRIS_RESTARTS):
                    copies.append((s, l2, f))
                    masks.append(np.isin(np.arange(len(x)), rows))
                    targets.append(teachers[f])
    masks = np.array(masks)
    weights, final, trace, p = _train_copies(arch, x, np.array(targets).T, masks.astype(np.float32),
                                             [c[1] for c in copies], steps, lr, seed)
    bce = -(y[:, None] * np.log(p) + (1 - y[:, None]) * np.log(1 - p))

    def best(*key):  # the start with the lowest training objective
        return min((j for j, c in enumerate(copies) if c == key), key=lambda j: final[j])

    out = []
    for s, tr in enumerate(trains):
        in_tr = np.isin(np.arange(len(x)), tr)
        cv = {l2: float(np.mean([bce[in_tr & ~masks[j], j].mean() for j in
                                 (best(s, l2, f) for f in range(IRIS_FOLDS))])) for l2 in IRIS_L2}
        l2 = min(IRIS_L2, key=cv.get)
        j = best(s, l2, IRIS_FOLDS)
        model = build(arch)
        model.set_weights([w[j] for w in weights])
        out.append((model, {"l2": l2, "inner_cv_loss": cv, "train_objective": float(final[j]),
                            "loss": [float(f"{v:.5g}") for v in trace[:, j]]}))
    return out


def _iris_baselines(x, y, splits) -> dict:
    """Float accuracy of classic models on the same splits, hyper-parameters by inner CV only:
    what the 80 training flowers allow at all, the ceiling the nets are judged against."""
    import warnings
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    makers = {
        "logistic_regression_C1": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "logistic_regression_cv": lambda: make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=10, cv=5, scoring="neg_log_loss", max_iter=5000)),
        "lda": LinearDiscriminantAnalysis,
        "svm_rbf_cv": lambda: GridSearchCV(make_pipeline(StandardScaler(), SVC()), {
            "svc__C": [0.1, 1, 10, 100], "svc__gamma": ["scale", 0.01, 0.1, 1]}, cv=5),
    }
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make in makers.items():
            accs = [float(np.mean(make().fit(x[tr], y[tr]).predict(x[te]) == y[te])) for tr, te in splits]
            out[name] = {"float_mean": float(np.mean(accs)), "per_split": accs}
    return out


def _iris_study(r: Recipe, seed: int, steps: int, progress: bool, n_splits: int = 20):
    """Both AI-ANNE nets on `n_splits` stratified random 80/20 splits: accuracy per test split of
    the float net and of its int8 conversion on TFLM (calibrated on the split's training rows).

    Returns (study dict for report.json, {arch: (model, info) fitted on split 0})."""
    from training.datasets import iris
    x, y = iris.load()
    splits = list(iris.splits(seed, n_splits))
    study, first = {}, {}
    bar = None
    if progress:
        from rich.progress import Progress
        bar = Progress()
        bar.start()
        task = bar.add_task(f"iris: 2 nets x {n_splits} splits, int8 on TFLM", total=2 * n_splits)
    for arch in ("iris_a", "iris_b"):
        fits = fit_iris(arch, x, y, [tr for tr, _ in splits], seed, steps, r.lr)
        fl, q = [], []
        for (tr, te), (model, _) in zip(splits, fits):
            fl.append(float(np.mean((_keras_predict(_open_batch(model, r, arch))(x[te]).reshape(-1) > 0.5)
                                    == (y[te] > 0.5))))
            p = convert.int8_predict(convert.to_tflite(model, x[tr]), x[te]).reshape(-1)
            q.append(float(np.mean((p > 0.5) == (y[te] > 0.5))))
            if bar:
                bar.advance(task)
        study[arch] = {"float_mean": float(np.mean(fl)), "int8_mean": float(np.mean(q)), "float_per_split": fl,
                       "int8_per_split": q, "l2_per_split": [info["l2"] for _, info in fits]}
        first[arch] = fits[0]
    if bar:
        bar.stop()
    study["baselines_float"] = _iris_baselines(x, y, splits)
    study["protocol"] = (f"{n_splits} stratified random splits (seed {seed}) of the 100 flowers into 80 train / "
                         f"20 test; per split and net: targets = posterior of an LDA fitted on the split's training "
                         f"rows, L2 from {IRIS_FOLDS}-fold inner CV, best of {IRIS_RESTARTS} "
                         f"starts by training objective, {steps} full-batch Adam steps, int8 calibrated on the "
                         "80 training rows, scored on TFLM")
    return study, first


def train_model(name: str, epochs: int | None = None, seed: int = 0, data=None, out_root: str | Path = "models",
                version: int | None = None, progress: bool = True, small: bool = False) -> Path:
    """Train `name`, quantize to full int8, convert, evaluate float vs int8 (TFLM), write artifacts.

    data: None (the built-in generator), a directory (`anomaly`: CSV windows t,ax,ay,az in
      normal/ and other folders; `keyword`: WAV files in one folder per word), or features:
      (x, y) arrays split 70/15/15 in order, or {'train','val','test': (x, y)}. For anomaly,
      y = 0 marks normal windows (operator labelled); only those are trained on.
    small: tiny datasets (tests).  Returns the artifact folder `out_root/name/version`."""
    t_start = time.time()
    r = recipe(name)
    epochs = int(epochs if epochs is not None else r.epochs)
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    d = load_data(name, seed, data, small=small)
    classes = d.get("classes", r.classes)
    if name == "keyword" and classes:
        r.arch_kw = {"n_classes": len(classes)}
    if name == "weather" and data is not None:
        r.arch_kw = {"n_classes": int(max(np.max(d["train"][1]), np.max(d["test"][1]))) + 1}
    if name == "anomaly":
        r.arch_kw = {"n_features": int(d["train"][0].shape[1])}
    base = Path(out_root) / name
    version = int(version) if version is not None else _next_version(base)
    folder = base / str(version)
    folder.mkdir(parents=True, exist_ok=True)

    study = iris_fit = None
    t0 = time.time()
    x_train, y_train = d["train"]
    if name == "iris":
        if data is None:  # the bar's study; the shipped net is the better net's fit on split 0
            study, first = _iris_study(r, seed, epochs * r.repeat, progress, n_splits=3 if small else 20)
            r.arch = max(("iris_a", "iris_b"), key=lambda a: study[a]["int8_mean"])
            model, iris_fit = first[r.arch]
        else:  # caller's rows: train + val together, validation happens by inner CV
            x_train, y_train = (np.concatenate([d["train"][i], d["val"][i]]) for i in (0, 1))
            [(model, iris_fit)] = fit_iris(r.arch, x_train, y_train, [np.arange(len(x_train))], seed,
                                           epochs * r.repeat, r.lr)
        history = {"loss": iris_fit.pop("loss")[r.repeat - 1::r.repeat]}  # once per epoch
    else:
        if name == "anomaly":
            y_train = x_train
        xv, yv = d["val"]
        model, history = fit(r, x_train, y_train, xv, xv if name == "anomaly" else yv, epochs, seed, progress)
    rep = np.asarray(x_train, np.float32)[np.random.default_rng(seed).permutation(len(x_train))[:300]]
    selection = None
    if r.candidates > 1:
        model, history, selection = _select(r, model, history, d, rep, epochs, seed, progress)
    train_seconds = time.time() - t0

    model.save(folder / "model.keras")
    float_tfl = convert.to_tflite(model)
    int8_tfl = convert.to_tflite(model, rep, per_channel=r.per_channel)  # the one every format ships
    shipped, other = ("per_channel", "per_tensor") if r.per_channel else ("per_tensor", "per_channel")
    other_tfl = convert.to_tflite(model, rep, per_channel=not r.per_channel)
    (folder / "float.tflite").write_bytes(float_tfl)
    (folder / "int8.tflite").write_bytes(int8_tfl)
    (folder / f"int8_{other}.tflite").write_bytes(other_tfl)

    float_predict = _keras_predict(_open_batch(model, r))
    def int8_predict(x):
        return convert.int8_predict(int8_tfl, x)
    threshold = None
    if name == "anomaly":
        xv_ = d["val"][0]
        threshold = float(np.percentile(ae_score(xv_, int8_predict(xv_)), 99))
    m = {**metrics(r, float_predict, d, "float"), **metrics(r, int8_predict, d, "int8", threshold)}
    other_metrics = metrics(r, lambda x: convert.int8_predict(other_tfl, x), d, f"int8_{other}")
    m.update({k: v for k, v in other_metrics.items() if "mae" in k or "auc" in k or "acc" in k or "top1" in k})
    if name == "sine":
        gx, _ = d["grid"]
        m["int8_float_gap"] = float(np.mean(np.abs(int8_predict(gx) - float_predict(gx))))
        m[f"int8_{other}_float_gap"] = float(np.mean(np.abs(convert.int8_predict(other_tfl, gx) - float_predict(gx))))
    if study is not None:
        for kind in ("float", "int8"):
            for arch in ("iris_a", "iris_b"):
                m[f"{kind}_acc_20_splits_{arch}"] = study[arch][f"{kind}_mean"]
            m[f"{kind}_acc_20_splits_best_net"] = study[r.arch][f"{kind}_mean"]
    if name == "keyword" or name == "weather":
        x, y = d["test"]
        m["int8_float_agreement"] = float(np.mean(np.argmax(int8_predict(x), 1) == np.argmax(float_predict(x), 1)))

    written = export.write(folder, "blob", name, version, int8_tfl, {"threshold": threshold, "classes": classes})
    written += export.write(folder, "c", name, version, int8_tfl)
    from training import tflm
    arena = int(tflm.find_arena_size(int8_tfl))
    details = convert.io_details(int8_tfl)
    sizes = {"float_tflite": len(float_tfl), "int8_tflite": len(int8_tfl), f"int8_tflite_{other}": len(other_tfl),
             f"int8_tflite_{shipped}": len(int8_tfl), "blob": (folder / "model.tfmb").stat().st_size,
             "keras": (folder / "model.keras").stat().st_size,
             "c_source": (folder / f"{export.c_identifier(name)}_model_data.cc").stat().st_size}
    bars = {}
    for key, (op, bar) in r.bars.items():
        val = m.get(key)
        bars[key] = {"bar": f"{op} {bar}", "value": val,
                     "met": val is not None and (val <= bar if op == "<=" else val >= bar)}
    report = {
        "name": name, "version": version, "seed": seed, "epochs": epochs, "arch": r.arch,
        "data": "generated" if data is None else ("directory " + str(data) if isinstance(data, (str, Path))
                                                   else "arrays"),
        "split_sizes": {k: int(len(v[0])) for k, v in d.items() if isinstance(v, tuple) and k != "grid"},
        "groups": d.get("groups", {}),
        "quantization": shipped.replace("_", "-"),
        "params": int(model.count_params()), "macs": __import__("training.models", fromlist=["macs"]).macs(model),
        "sizes_bytes": sizes, "tflm_arena_bytes": arena, "metrics": m, "bars": bars,
        "all_bars_met": all(b["met"] for b in bars.values()),
        "threshold": threshold, "classes": classes, "io": details,
        "history": history, "iris_study": study, "iris_fit": iris_fit, "candidate_selection": selection,
        "train_seconds": round(train_seconds, 2), "total_seconds": None,
        "packages": _packages(), "cpu_count": os.cpu_count(),
    }
    if name == "anomaly":
        report["score"] = "mean squared error between dequantized int8 output and the float input features"
    from training import report as plots
    plots.write_plots(folder, name, r, d, history, float_predict, int8_predict, threshold, classes)
    report["total_seconds"] = round(time.time() - t_start, 2)
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    return folder


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def evaluate(name: str, folder: str | Path, x: np.ndarray, y: np.ndarray | None = None) -> dict:
    """Score the int8 model in `folder` on labelled features, through TFLM.

    anomaly: y = 0 normal / 1 anomalous -> auc (if both present), false_alarm_rate and
    detection_rate at the folder's threshold; classifiers: accuracy; sine: mae."""
    folder = Path(folder)
    tfl = (folder / "int8.tflite").read_bytes()
    rep = json.loads((folder / "report.json").read_text()) if (folder / "report.json").exists() else {}
    x = np.asarray(x, np.float32)
    out = convert.int8_predict(tfl, x)
    res: dict = {"n": int(len(x)), "version": rep.get("version")}
    if name == "anomaly":
        s = ae_score(x, out)
        thr = rep.get("threshold")
        res["mean_score"] = float(np.mean(s))
        if y is not None:
            y = np.asarray(y)
            res["auc"] = auc(y, s)
            if thr is not None and np.any(y == 0):
                res["false_alarm_rate"] = float(np.mean(s[y == 0] > thr))
            if thr is not None and np.any(y != 0):
                res["detection_rate"] = float(np.mean(s[y != 0] > thr))
    elif name == "sine":
        if y is not None:
            res["mae"] = float(np.mean(np.abs(out.reshape(-1) - np.asarray(y).reshape(-1))))
    elif name == "iris":
        if y is not None:
            res["accuracy"] = float(np.mean((out.reshape(-1) > 0.5) == (np.asarray(y).reshape(-1) > 0.5)))
    else:
        if y is not None:
            res["accuracy"] = float(np.mean(np.argmax(out, 1) == np.asarray(y)))
    return res


def compare(name: str, candidate: str | Path, current: str | Path, x: np.ndarray, y: np.ndarray,
            margin: float = 0.0) -> dict:
    """Is `candidate` at least as good as `current` (+margin) on this held-out set?

    The key is accuracy (classifiers), AUC then false-alarm rate (anomaly), or MAE (sine)."""
    a, b = evaluate(name, candidate, x, y), evaluate(name, current, x, y)
    if name == "sine":
        better = a["mae"] <= b["mae"] - margin
    elif name == "anomaly":
        if a.get("auc") is not None and b.get("auc") is not None:
            better = a["auc"] >= b["auc"] + margin
        else:
            better = a.get("false_alarm_rate", 1.0) <= b.get("false_alarm_rate", 1.0) - margin
    else:
        better = a["accuracy"] >= b["accuracy"] + margin
    return {"candidate": a, "current": b, "candidate_better": bool(better)}
