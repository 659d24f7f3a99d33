"""Fixtures for the node tests: model blobs, the gateway side of OTA, simulated nodes."""
import pytest

import esp32_models as models
from esp32_gateway_side import GatewaySide

SITE = "site-1"
FLEET_KEY = bytes(range(32))
KEY_HEX = FLEET_KEY.hex()


@pytest.fixture(scope="session")
def blobs():
    """{model name: {version: blob}} for the models an ESP32 node runs."""
    return {name: {v: models.blob(name, v) for v in (1, 2)} for name in models.NODE_MODELS}


@pytest.fixture
def gateway(mosquitto):
    g = GatewaySide(mosquitto.port, SITE)
    yield g
    g.close()


@pytest.fixture
def make_node(tmp_path, mosquitto):
    """make_node(model, blob, node_id=..., **config overrides) -> a booted SimNode."""
    from node_firmware.sim.node import SimNode
    made = []

    def make(model, blob, node_id="esp32-1", runtime="tfmicro", **overrides):
        n = SimNode.create(tmp_path / node_id, node_id, SITE, mosquitto.url, model, blob, KEY_HEX,
                           runtime=runtime, **overrides)
        made.append(n)
        return n

    yield make
    for n in made:
        try:
            n.kill()
        except Exception:
            pass
