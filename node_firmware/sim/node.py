"""A simulated ESP32 node: the real app (node_firmware/esp32/lib/tinyfleet_node)
on a SimHal, with its flash in a host directory. `step()` does one pass of the
device loop, so one process can step many nodes; a "reboot" is a new SimNode on
the same directory."""
import json
import os
import time

from . import _LIB  # noqa: F401  (puts tinyfleet_node on sys.path)
from .fs import PowerCut  # noqa: F401  (re-exported for tests)
from .hal import Board, SimHal

# Faster than the device defaults, so tests and demos see results in seconds.
SIM_DEFAULTS = {
    "sample_ms": 200, "batch": 8, "batch_ms": 500, "heartbeat_ms": 5000, "keepalive": 10,
    "backoff_min_ms": 100, "backoff_max_ms": 2000, "ota_timeout_ms": 2000, "ota_retries": 8,
}


def write_config(root, node_id, site, broker, model, hmac_key, **overrides):
    cfg = {"node_id": node_id, "site": site, "broker": broker, "model": model, "hmac_key": hmac_key}
    cfg.update(SIM_DEFAULTS)
    cfg.update(overrides)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(cfg, f)
    return cfg


def install_blob(root, blob, slot_path="/models/slot_a.tfmb"):
    """What `tinyfleet flash esp32` does for the first model: put it in slot A."""
    path = root + slot_path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)


class SimNode:
    def __init__(self, root, board=None, runtime="tfmicro", cut_at=None, torn=False, cut_if=None, power_lost=False):
        """Boot the node whose flash is `root` (config.json and a model already there).
        Raises PowerCut if the cut falls inside the boot itself. `power_lost`: this boot
        follows a power loss (the reset cause a real board reports), not a crash."""
        from tinyfleet_node.app import Node
        self.root = str(root)
        self.hal = SimHal(self.root, board or Board(), runtime, cut_at, torn, cut_if=cut_if, power_lost=power_lost)
        self.node = Node(self.hal)

    @classmethod
    def create(cls, root, node_id, site, broker, model, blob, hmac_key, board=None, runtime="tfmicro", **overrides):
        root = str(root)
        if not os.path.exists(os.path.join(root, "config.json")):
            write_config(root, node_id, site, broker, model, hmac_key, **overrides)
            install_blob(root, blob)
        return cls(root, board, runtime)

    @property
    def ota(self):
        return self.node.ota

    def step(self):
        self.node.step()

    def fileno(self):
        c = self.node.client
        return c.fileno() if c is not None else -1

    def has_input(self):
        c = self.node.client
        return c is not None and c.pending()

    def run(self, seconds, until=None, pause=0.001):
        """Step for up to `seconds`; stop early once until() is true. Returns until()'s last value."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.node.step()
            if until is not None and until():
                return True
            time.sleep(pause)
        return until() if until is not None else None

    def kill(self):
        """Power off: the TCP connection just drops (the broker sends the will)."""
        c = self.node.client
        if c is not None:
            c.sock.close()
        self.node.connected = False
        self.node.client = None

    def stop(self):
        self.node.stop()
