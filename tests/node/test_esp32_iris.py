"""Iris on the ESP32 node: a sensor-less source that replays held-out iris rows (a
CSV on flash, else the built-in rows), one sigmoid output turned into a class name
and its probability, against a real mosquitto."""
from pathlib import Path

import pytest

from conftest import KEY_HEX, SITE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def blob():
    return (ROOT / "models" / "iris" / "1" / "model.tfmb").read_bytes()


def test_builtin_rows_are_rows_of_sklearns_iris():
    from sklearn.datasets import load_iris

    from node_firmware.sim import node  # noqa: F401
    from tinyfleet_node.sensors import IRIS_ROWS
    d = load_iris()
    known = {tuple(round(float(v), 1) for v in x) + (str(d.target_names[t]),) for x, t in zip(d.data, d.target)}
    assert all(tuple(r) in known for r in IRIS_ROWS)
    assert [r[4] for r in IRIS_ROWS].count("versicolor") == 10 and len(IRIS_ROWS) == 20


def test_sim_rows_are_the_heldout_rows_of_training():
    from node_firmware.sim import devices
    from training.datasets import iris
    train, test = next(iris.splits(0))
    x, y = iris.load()
    rows = devices.iris_rows(0)
    assert len(rows) == len(test)
    for r, i in zip(rows, test):
        assert abs(iris.scale(r[:4]) - x[i]).max() < 1e-6 and r[4] == iris.CLASSES[int(y[i])]


def test_iris_features_match_training():
    import numpy as np

    from node_firmware.micropython import features
    from node_firmware.sim import devices
    from training.datasets import iris
    rows = devices.iris_rows(0)
    want = iris.scale(np.array([r[:4] for r in rows]))
    got = np.array([features.iris_features(r) for r in rows])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_iris_node_publishes_classes_from_the_csv_on_flash(blob, gateway, mosquitto, tmp_path):
    from node_firmware.sim import devices
    from node_firmware.sim.node import SimNode, install_blob, write_config
    root = tmp_path / "iris-1"
    write_config(root, "iris-1", SITE, mosquitto.url, "iris", KEY_HEX, sample_ms=10, batch=5, heartbeat_ms=200)
    install_blob(str(root), blob)
    (root / "data").mkdir()
    (root / "data" / "iris.csv").write_bytes(devices.iris_csv(0))  # what a flash step would copy
    node = SimNode(root)
    node.run(20, until=lambda: len(gateway.telemetry["iris-1"]) >= 20 and gateway.heartbeats["iris-1"])
    items = gateway.telemetry["iris-1"][:20]
    assert len(items) == 20 and not gateway.errors  # every message passed contract.decode
    assert [i["seq"] for i in items] == list(range(20))
    assert {i["model"] for i in items} == {"iris"} and {i["model_version"] for i in items} == {1}
    assert all(i["result"] in ("versicolor", "virginica") and 0.5 <= i["score"] <= 1.0 for i in items)
    rows = devices.iris_rows(0)
    assert [len(i["features"]) for i in items] == [4] * 20
    hits = sum(i["result"] == rows[i["seq"]][4] for i in items)
    assert hits >= 16  # int8 models/iris/1: 19 of these 20 rows (report.json int8_acc_test 0.9)
    assert gateway.heartbeats["iris-1"][0]["models"] == {"iris": 1}
    assert node.node.inference_errors == 0


def test_iris_node_without_a_csv_replays_the_builtin_rows(blob, tmp_path):
    from node_firmware.sim.node import SimNode
    from tinyfleet_node.sensors import IRIS_ROWS
    node = SimNode.create(tmp_path / "n", "n", SITE, "mqtt://127.0.0.1:1", "iris", blob, KEY_HEX)
    assert node.node.cfg["sensor"] == "iris" and node.node.cfg["send_features"] is True
    got = [node.node.sample() for _ in range(len(IRIS_ROWS) + 1)]
    assert got[0]["features"] == got[-1]["features"]  # it goes round
    assert sum(g["result"] == r[4] for g, r in zip(got, IRIS_ROWS)) >= 16


@pytest.mark.parametrize("text,message", [
    (b"", "has no rows"),
    (b"sl,sw,pl,pw\n5.1,3.5,1.4\n", "line 2: need 4 numbers"),
    (b"5.1,3.5,1.4,0.2\n5.1,x,1.4,0.2\n", "line 2: need 4 numbers"),
])
def test_bad_csv_is_named(text, message):
    from node_firmware.sim import node  # noqa: F401
    from tinyfleet_node.sensors import read_rows
    with pytest.raises(ValueError, match=message):
        read_rows(text, "/data/iris.csv")


def test_csv_rows_with_and_without_a_class():
    from node_firmware.sim import node  # noqa: F401
    from tinyfleet_node.sensors import read_rows
    rows = read_rows(b"# measured in the lab\n\n6.4,2.8,5.6,2.2,virginica\n5.7, 2.8, 4.5, 1.3\n", "f")
    assert rows == [(6.4, 2.8, 5.6, 2.2, "virginica"), (5.7, 2.8, 4.5, 1.3, None)]


@pytest.mark.parametrize("change,message", [
    ({"sensor": "weather"}, "model 'iris' takes the features of sensor 'iris', not 'weather'"),
    ({"rows_file": "data/iris.csv"}, "rows_file must be an absolute file path"),
])
def test_iris_config_errors_are_clear(change, message):
    from node_firmware.sim import node  # noqa: F401
    from tinyfleet_node import config
    raw = {"node_id": "n1", "site": SITE, "broker": "mqtt://127.0.0.1:1883", "model": "iris", "hmac_key": KEY_HEX}
    cfg = config.validate(dict(raw))
    assert cfg["sensor"] == "iris" and cfg["task"] == "classify" and cfg["rows_file"] == "/data/iris.csv"
    raw.update(change)
    with pytest.raises(config.ConfigError) as e:
        config.validate(raw)
    assert message in str(e.value)


def test_one_sigmoid_output_gives_a_class_and_its_probability(blob):
    from node_firmware.sim import node  # noqa: F401
    from node_firmware.sim.hal import SimHal
    from tinyfleet_node.inference import Inference
    inf = Inference(SimHal("/nonexistent"), blob, None, "classify")
    assert inf.classes == ["versicolor", "virginica"] and inf.n_out == 1
    big = inf.run([3.0, 3.0, 3.0, 3.0])   # long petals: virginica
    small = inf.run([-3.0, -3.0, -3.0, -3.0])
    assert big[0] == "virginica" and small[0] == "versicolor"
    assert 0.5 <= big[1] <= 1.0 and 0.5 <= small[1] <= 1.0
