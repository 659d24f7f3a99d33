"""Fixtures with real parts: a private mosquitto per test (plain, or with a
password file and ACL) and the machine's PostgreSQL."""
import os
import uuid

import pytest

from tinyfleet.broker import Mosquitto

NODE_ACL = """# gateways see their whole site; nodes only write their own topics
user gateway
topic readwrite tinyfleet/#
pattern write tinyfleet/+/%u/telemetry
pattern write tinyfleet/+/%u/status
pattern write tinyfleet/+/%u/heartbeat
pattern write tinyfleet/+/%u/ota/request
pattern write tinyfleet/+/%u/ota/state
pattern read tinyfleet/+/%u/ota/#
"""


@pytest.fixture
def mosquitto(tmp_path):
    """A private anonymous broker on a free port; yields the Mosquitto (url, port, restart, kill)."""
    broker = Mosquitto(tmp_path / "broker").start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_auth(tmp_path):
    """A private broker with per-node passwords and the node ACL. Users: gateway/gw-secret,
    node-1/secret-1, node-2/secret-2."""
    users = {"gateway": "gw-secret", "node-1": "secret-1", "node-2": "secret-2"}
    broker = Mosquitto(tmp_path / "broker", users=users, acl=NODE_ACL).start()
    yield broker
    broker.stop()


PG_URL = os.environ.get("TINYFLEET_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url():
    """A fresh schema in the local PostgreSQL, dropped afterwards. Under CI=true a missing
    server fails the test loudly instead of skipping it."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(PG_URL)
    schema = "t_" + uuid.uuid4().hex[:12]
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as e:  # OperationalError when the server is down
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is required under CI: {e}")
        pytest.skip(f"PostgreSQL not reachable: {e}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()
