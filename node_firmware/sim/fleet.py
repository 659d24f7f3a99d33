"""`tinyfleet node sim`: N simulated ESP32 nodes (the real app code) stepped in
one process against a broker. Each node's flash is a directory under `root`;
running again resumes them (sequence numbers, models, OTA progress)."""
import os
import selectors
import threading
import time
from pathlib import Path

from . import _LIB  # noqa: F401
from .faults import NONE
from .hal import Board
from .node import SimNode
from .umqtt import simple


DEFAULT_THREADS = 8
TICK_S = 0.25   # a node with nothing to read is still stepped this often


class SimError(Exception):
    pass


def find_blob(model_dir, name):
    """models/<name>/<newest version>/model.tfmb."""
    base = Path(model_dir) / name
    versions = sorted((int(p.name) for p in base.glob("*") if p.name.isdigit() and (p / "model.tfmb").exists()))
    if not versions:
        raise SimError("no model blob for %r: expected %s/<version>/model.tfmb (run `tinyfleet train %s`)"
                       % (name, base, name))
    return (base / str(versions[-1]) / "model.tfmb").read_bytes()


def make_nodes(count, site, broker, models, model_dir, key_hex, root, sample_ms=1000, runtime="tfmicro",
               prefix="esp32-", seed=0, **overrides):
    if not models:
        raise SimError("--models needs at least one model name")
    try:
        if len(bytes.fromhex(key_hex)) < 16:
            raise ValueError
    except (TypeError, ValueError):
        raise SimError("the fleet key must be at least 32 hex digits (--key or TINYFLEET_FLEET_KEY)") from None
    blobs = {m: find_blob(model_dir, m) for m in models}
    # Vibration nodes sit on the machines the reference anomaly model was commissioned on.
    from training.datasets.vibration import split_machines
    machines = split_machines(seed)[0]
    cfg = dict(heartbeat_ms=30000, batch_ms=max(2000, sample_ms))
    cfg.update(overrides)
    nodes = []
    for i in range(count):
        model = models[i % len(models)]
        node_id = "%s%d" % (prefix, i + 1)
        unit = machines[i % len(machines)] if model == "anomaly" else i
        # A DS-CNN in pure Python takes ~1 s per clip on CPython: keyword nodes run the bit-exact numpy runtime.
        rt = "reference" if model == "keyword" else runtime
        nodes.append(SimNode.create(Path(root) / site / node_id, node_id, site, broker, model, blobs[model], key_hex,
                                    board=Board(seed, unit), runtime=rt, sample_ms=sample_ms, **cfg))
    return nodes


# The field change the demo plays: a conveyor installed next to the machines raises the
# broadband noise floor and the rate of knocks. The machines are healthy, but the old
# anomaly model calls most of their windows anomalous (measured: 70-100% on 6 of 7 machines).
DRIFT = {"noise": 2.0, "knocks": 2.0}


def drift(nodes, echo=print):
    """Change the surroundings of every vibration machine of these nodes (DRIFT)."""
    moved = 0
    for n in nodes:
        if n.node.cfg["model"] == "anomaly":
            n.hal.sim_board.machine.set_surroundings(**DRIFT)
            moved += 1
    echo("field change: %d machines now with noise x%.0f and knocks x%.0f" % (moved, DRIFT["noise"], DRIFT["knocks"]))


class Stepper:
    """Steps the nodes in background threads, each owning an equal slice and stepping
    it round-robin. The threads overlap what a node waits for (a QoS 1 publish blocks
    until its PUBACK, as umqtt.simple does on the device, and every flash write is a
    file operation); the Python work itself takes turns on the GIL."""

    def __init__(self, nodes, threads=DEFAULT_THREADS, faults=NONE):
        self.nodes = nodes
        self.threads = max(1, min(threads, len(nodes)))
        self.slices = [nodes[i::self.threads] for i in range(self.threads)]
        self.slowest = [0.0] * len(self.slices)   # seconds of the longest pass, per thread
        self.faults = faults
        self.disconnects = 0
        self.power_cuts = 0
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        self._stop.clear()
        self._threads = [threading.Thread(target=self._loop, args=(i,), name="sim-%d" % i, daemon=True)
                         for i in range(len(self.slices))]
        for t in self._threads:
            t.start()
        return self

    def _loop(self, i):
        """Step a node as soon as its socket has data, and every TICK_S anyway (its
        clocks: sampling, batches, heartbeats, keepalive, OTA re-requests)."""
        mine = self.slices[i]
        sel = selectors.DefaultSelector()
        fds = {}          # node index -> the descriptor registered for it
        last = [0.0] * len(mine)
        last_faults = time.monotonic()
        while not self._stop.is_set():
            t = time.monotonic()
            if self.faults and t - last_faults >= 1.0:
                self._break(i, t - last_faults)
                last_faults = t
            for k, n in enumerate(mine):
                fd = n.fileno()
                if fds.get(k) != fd:
                    _watch(sel, fds, k, fd)
                if t - last[k] >= TICK_S or n.has_input():
                    last[k] = t
                    n.step()
            for key, _ in sel.select(timeout=0.02):
                k = key.data
                last[k] = time.monotonic()
                mine[k].step()
            self.slowest[i] = max(self.slowest[i], time.monotonic() - t)

    def _break(self, i, dt):
        """Disconnects and power cuts for thread i's nodes over the last dt seconds.
        A cut node boots again from its flash directory, as after a real power loss."""
        mine, f = self.slices[i], self.faults
        for k, n in enumerate(mine):
            if f.chance(f.powercut * dt) and n.ota.job is not None:
                n.kill()
                reboot = SimNode(n.root, n.hal.sim_board, n.hal.runtime, power_lost=True)
                mine[k] = self.nodes[i + k * self.threads] = reboot
                self.power_cuts += 1
            elif n.node.connected and f.chance(f.disconnect * dt):
                n.kill()
                self.disconnects += 1

    def stop(self, shutdown=True):
        """Stop stepping; with `shutdown`, every node also says offline and disconnects."""
        self._stop.set()
        for t in self._threads:
            t.join()
        if shutdown:
            for n in self.nodes:
                n.stop()


def _watch(sel, fds, k, fd):
    """Register node k's new socket (its old one is gone; a reused number may still
    be registered for another node, which then just gets an extra step)."""
    old = fds.pop(k, -1)
    if old >= 0:
        try:
            sel.unregister(old)
        except (KeyError, ValueError, OSError):
            pass
    if fd >= 0:
        try:
            sel.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
        sel.register(fd, selectors.EVENT_READ, k)
        fds[k] = fd


def run(nodes, duration=0.0, echo=print, report_every=5.0, drift_at=None, threads=DEFAULT_THREADS, faults=NONE):
    """Step every node until `duration` seconds pass (0: forever); at `drift_at`
    seconds the machines change regime; `faults` break links and nodes throughout."""
    start = time.monotonic()
    next_report = start + report_every
    simple.FAULTS = faults
    if faults:
        echo("faults: %r" % faults)
    stepper = Stepper(nodes, threads, faults).start()
    try:
        while duration <= 0 or time.monotonic() - start < duration:
            if drift_at is not None and time.monotonic() - start >= drift_at:
                drift(nodes, echo)
                drift_at = None
            time.sleep(0.1)
            if time.monotonic() >= next_report:
                next_report += report_every
                echo(summary(nodes))
    except KeyboardInterrupt:
        pass
    finally:
        stepper.stop()
        simple.FAULTS = NONE
    echo(summary(nodes))
    if faults:
        echo("faults injected: %d disconnects, %d power cuts during OTA" % (stepper.disconnects, stepper.power_cuts))


def summary(nodes):
    up = sum(1 for n in nodes if n.node.connected)
    inf = sum(n.node.inferences for n in nodes)
    pending = sum(len(n.node.ring) for n in nodes)
    models = sorted({"%s v%d" % (n.node.cfg["model"], n.node.model_version) for n in nodes})
    return "%d/%d nodes connected, %d inferences, %d results buffered, models: %s" % (
        up, len(nodes), inf, pending, ", ".join(models))


def default_root():
    return Path(os.environ.get("TINYFLEET_SIM_ROOT", "var/sim"))
