"""A simulated ESP32 node (the real app code on CPython) against a real mosquitto:
telemetry from each model, QoS 1 results kept across a broker restart, the will,
sequence numbers across reboots, the bounded ring, config validation, sensors."""
import json
import threading

import paho.mqtt.client as mqtt
import pytest

from contract import protocol as P
from conftest import KEY_HEX, SITE
import esp32_models as models


@pytest.mark.parametrize("model", models.NODE_MODELS)
def test_telemetry_from_each_model(model, blobs, gateway, make_node):
    node = make_node(model, blobs[model][1], sample_ms=20, batch=4, heartbeat_ms=200)
    node.run(15, until=lambda: len(gateway.telemetry["esp32-1"]) >= 12 and gateway.heartbeats["esp32-1"])
    items = gateway.telemetry["esp32-1"]
    assert len(items) >= 12 and not gateway.errors  # every message passed contract.decode
    assert [i["seq"] for i in items] == list(range(len(items)))
    assert {i["model"] for i in items} == {model} and {i["model_version"] for i in items} == {1}
    assert len(items[0]["features"]) == models.N_INPUTS[model]
    assert len({json.dumps(i["features"]) for i in items}) > 1  # the sensor moves
    if model == "weather":
        assert all(isinstance(i["result"], int) and 0 <= i["result"] < 5 for i in items)
    hb = gateway.heartbeats["esp32-1"][0]
    assert hb["models"] == {model: 1} and hb["board"] == "esp32" and hb["runtime"] == P.RUNTIME_VERSION
    assert gateway.status["esp32-1"] == "online"
    assert node.node.inference_errors == 0


def test_reference_runtime_gives_the_same_results(blobs, gateway, make_node):
    """The numpy runtime a big fleet may use is bit-exact with tfmicro on the node's inputs."""
    a = make_node("anomaly", blobs["anomaly"][1], node_id="tfm", sample_ms=20)
    b = make_node("anomaly", blobs["anomaly"][1], node_id="ref", runtime="reference", sample_ms=20)
    for _ in range(10):
        feats, _ = a.node.source.sample()
        assert a.node.model.run(feats) == b.node.model.run(feats)


def test_broker_restart_loses_no_qos1_result(blobs, gateway, make_node, mosquitto):
    node = make_node("sine", blobs["sine"][1], sample_ms=10, batch=4, batch_ms=50)
    node.run(10, until=lambda: len(gateway.telemetry["esp32-1"]) >= 20)
    t = threading.Thread(target=mosquitto.restart, kwargs={"down_for": 1.0})
    t.start()
    while t.is_alive():  # the node keeps sampling while the broker is down
        node.step()
    node.run(20, until=lambda: node.node.connects >= 2 and node.node.connected and not node.node.ring)
    assert node.node.connects == 2  # it did lose the broker, and came back
    last = node.node.seq.value
    node.run(10, until=lambda: {i["seq"] for i in gateway.telemetry["esp32-1"]} >= set(range(last)))
    seqs = {i["seq"] for i in gateway.telemetry["esp32-1"]}
    assert set(range(last)) <= seqs, sorted(set(range(last)) - seqs)[:10]
    assert node.node.dropped == 0
    assert not gateway.errors


def test_will_says_offline_when_the_node_dies(blobs, gateway, make_node, mosquitto):
    node = make_node("sine", blobs["sine"][1])
    node.run(5, until=lambda: gateway.status.get("esp32-1") == "online")
    node.kill()
    gateway.wait(lambda: gateway.status.get("esp32-1") == "offline", 5, "the will")
    got = []  # retained: a gateway that connects later sees it too
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="late")
    c.on_message = lambda cl, u, msg: got.append(P.decode(P.STATUS, msg.payload))
    c.connect("127.0.0.1", mosquitto.port)
    c.subscribe(P.topic(SITE, "esp32-1", P.STATUS), 1)
    c.loop_start()
    gateway.wait(lambda: got, 5, "retained status")
    c.loop_stop()
    c.disconnect()
    assert got[0]["state"] == "offline" and got[0]["node"] == "esp32-1"


def test_clean_stop_says_offline_too(blobs, gateway, make_node):
    node = make_node("sine", blobs["sine"][1])
    node.run(5, until=lambda: gateway.status.get("esp32-1") == "online")
    node.stop()
    gateway.wait(lambda: gateway.status.get("esp32-1") == "offline", 5, "offline status")


def test_seq_strictly_increases_across_reboots(blobs, gateway, make_node):
    from node_firmware.sim.node import SimNode
    node = make_node("sine", blobs["sine"][1], sample_ms=10, batch=1)
    node.run(10, until=lambda: len(gateway.telemetry["esp32-1"]) >= 5)
    node.kill()
    first = [i["seq"] for i in gateway.telemetry["esp32-1"]]
    node2 = SimNode(node.root)
    node2.run(10, until=lambda: len(gateway.telemetry["esp32-1"]) >= len(first) + 5)
    node2.kill()
    seqs = [i["seq"] for i in gateway.telemetry["esp32-1"]]
    assert seqs == sorted(set(seqs)) and min(seqs[len(first):]) > max(first)


def test_ring_is_bounded_and_reconnects_back_off(blobs, tmp_path):
    from node_firmware.sim.node import SimNode
    from tinyfleet.broker import free_port
    url = "mqtt://127.0.0.1:%d" % free_port()  # nothing listens
    node = SimNode.create(tmp_path / "n", "lonely", SITE, url, "sine", blobs["sine"][1], KEY_HEX,
                          sample_ms=1, ring=10, backoff_min_ms=20, backoff_max_ms=160)
    attempts = []
    connect = node.node.connect
    node.node.connect = lambda: (attempts.append(node.hal.ticks_ms()), connect())
    node.run(1.5)
    assert len(node.node.ring) == 10 and node.node.dropped > 0
    assert node.node.backoff == 160
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] < gaps[-1] and min(gaps[-3:]) >= 150  # 20, 40, 80, 160, 160 ms ...


@pytest.mark.parametrize("change,message", [
    ({"node_id": None}, "missing required field 'node_id'"),
    ({"broker": "tcp://x"}, "mqtt://host:port"),
    ({"node_id": "bad/id"}, "outside [A-Za-z0-9._-]"),
    ({"hmac_key": "abc"}, "hmac_key"),
    ({"sample_ms": 0}, "sample_ms must be > 0"),
    ({"sample_ms": "fast"}, "'sample_ms' must be int"),
    ({"sampel_ms": 5}, "unknown field 'sampel_ms'"),
    ({"model": "mystery"}, "sensor must be one of"),
    ({"slots": ["/a", "/a"]}, "different files"),
])
def test_config_errors_are_clear(change, message, tmp_path):
    from node_firmware.sim import fs  # noqa: F401  (tinyfleet_node on the path)
    from tinyfleet_node import config
    raw = {"node_id": "n1", "site": SITE, "broker": "mqtt://127.0.0.1:1883", "model": "sine", "hmac_key": KEY_HEX}
    raw.update(change)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(config.ConfigError) as e:
        config.validate(raw)
    assert message in str(e.value)


def test_config_file_missing_or_not_json(tmp_path):
    from node_firmware.sim.fs import SimStorage
    from tinyfleet_node import config
    fs = SimStorage(tmp_path)
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(fs)
    (tmp_path / "config.json").write_text("{node_id: 1")
    with pytest.raises(config.ConfigError, match="not valid JSON"):
        config.load(fs)


def test_bme280_driver_matches_the_datasheet_example():
    from node_firmware.sim import devices
    from tinyfleet_node.sensors import BME280
    comp = devices._Driverless()
    t, _, p, t_fine = BME280.compensate(comp, 519888, 415148, 0)
    assert abs(t - 25.08) < 0.01 and abs(p - 1006.5327) < 0.01  # Bosch BME280 datasheet, 8.1


def test_simulated_i2c_sensors_reach_the_drivers():
    from node_firmware.sim.hal import Board, SimHal
    from tinyfleet_node.sensors import BME280, MPU6050
    board = Board(seed=3, unit=2)
    hal = SimHal("/nonexistent", board)
    bme = BME280(hal.i2c(0, 22, 21, 400000), 0x76)
    t, h, p = bme.read()
    r = board.station.reading.__self__  # the same station the driver read
    last = hal._devices[0x76].dev.last
    assert abs(t - last["temp_c"]) < 0.02 and abs(h - last["humidity_pct"]) < 0.05
    assert abs(p - last["pressure_hpa"]) < 0.02 and r is board.station
    acc = MPU6050(hal.i2c(0, 22, 21, 400000), 0x68)
    z = [acc.read()[2] for _ in range(256)]
    assert abs(sum(z) / len(z) - 1.0) < 0.2  # gravity on z
    with pytest.raises(OSError):
        MPU6050(hal.i2c(0, 22, 21, 400000), 0x69)  # nothing at that address


def test_cli_node_sim_runs_a_small_fleet(blobs, gateway, mosquitto, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    for name in ("sine", "weather"):
        d = tmp_path / "models" / name / "1"
        d.mkdir(parents=True)
        (d / "model.tfmb").write_bytes(blobs[name][1])
    exe = str(Path(sys.executable).parent / "tinyfleet")
    r = subprocess.run([exe, "node", "sim", "--count", "3", "--site", SITE, "--broker", mosquitto.url,
                        "--models", "sine,weather", "--model-dir", str(tmp_path / "models"), "--key", KEY_HEX,
                        "--root", str(tmp_path / "flash"), "--duration", "4", "--sample-ms", "100"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "/3 nodes connected" in r.stdout and "inferences" in r.stdout
    gateway.wait(lambda: all(len(gateway.telemetry["esp32-%d" % i]) >= 5 for i in (1, 2, 3)), 10, "telemetry")
    assert {gateway.telemetry["esp32-2"][0]["model"], gateway.telemetry["esp32-1"][0]["model"]} == {"sine", "weather"}
    assert not gateway.errors
    gateway.wait(lambda: all(gateway.status.get("esp32-%d" % i) == "offline" for i in (1, 2, 3)), 5, "offline")
    r = subprocess.run([exe, "node", "sim", "--models", "keyword", "--model-dir", str(tmp_path / "models"),
                        "--key", KEY_HEX, "--root", str(tmp_path / "flash2"), "--duration", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no model blob for 'keyword'" in r.stderr
