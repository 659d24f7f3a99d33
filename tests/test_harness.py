"""The real-parts fixtures themselves: broker, broker with auth + ACL, PostgreSQL, CLI."""
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy


def connect(broker, user=None, password=None, client_id="t"):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if user:
        c.username_pw_set(user, password)
    rc = c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c, rc


def receive(broker, topic, publish, **auth):
    """Subscribe as the gateway, run `publish`, return the payloads seen within 1 s."""
    got, ready = [], threading.Event()
    sub, _ = connect(broker, client_id="sub", **auth)
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.on_subscribe = lambda *a: ready.set()
    sub.subscribe(topic, qos=1)
    assert ready.wait(5)
    publish()
    threading.Event().wait(1.0)
    sub.loop_stop()
    sub.disconnect()
    return got


def test_private_broker_delivers_and_restarts(mosquitto):
    pub, _ = connect(mosquitto)
    assert receive(mosquitto, "x/#", lambda: pub.publish("x/1", b"hi", qos=1).wait_for_publish(5)) == [b"hi"]
    pub.loop_stop()
    mosquitto.restart()
    pub2, _ = connect(mosquitto, client_id="t2")
    assert receive(mosquitto, "x/#", lambda: pub2.publish("x/2", b"again", qos=1).wait_for_publish(5)) == [b"again"]
    pub2.loop_stop()


def test_auth_broker_rejects_bad_password_and_spoofed_node(mosquitto_auth):
    bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bad")
    bad.username_pw_set("node-1", "wrong")
    codes = []
    bad.on_connect = lambda c, u, f, rc, p: codes.append(rc)
    bad.connect("127.0.0.1", mosquitto_auth.port)
    bad.loop_start()
    threading.Event().wait(1.0)
    bad.loop_stop()
    assert codes and codes[0].is_failure

    node, _ = connect(mosquitto_auth, "node-1", "secret-1", client_id="node-1")

    def publish():
        node.publish("tinyfleet/a/node-1/telemetry", b"mine", qos=1).wait_for_publish(5)
        node.publish("tinyfleet/a/node-2/telemetry", b"spoofed", qos=1).wait_for_publish(5)

    got = receive(mosquitto_auth, "tinyfleet/#", publish, user="gateway", password="gw-secret")
    node.loop_stop()
    assert got == [b"mine"]


def test_postgres_fixture_gives_a_private_schema(postgres_url):
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x int)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    engine.dispose()


def test_cli_lists_subcommands_and_rejects_unknown():
    out = subprocess.run([sys.executable, "-m", "tinyfleet", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ["demo", "train", "export", "parity", "cloud", "gateway", "node", "ota", "flash", "bench"]:
        assert cmd in out.stdout
    bad = subprocess.run([sys.executable, "-m", "tinyfleet", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "No such command" in bad.stderr
