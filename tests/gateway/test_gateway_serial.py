"""Serial bridge: a pty pair stands in for a Nano 33 BLE Sense on USB serial. Its TF1
frames become MQTT messages under its own node id; its OTA arrives as frames."""
import json
import os
import select
import threading
import time
import tty

from gw_harness import item, wait_for
from contract import protocol as p
from ota_node import OtaClient

NODE = "nano-1"
KEY = b"fleet-key"


class FakeNano:
    """The board side of the pty: writes frames, reads the gateway's frames."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.ota = OtaClient(NODE, KEY, self.send)
        self.got: list[tuple[str, bytes]] = []
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def send(self, kind: str, payload: bytes) -> None:
        self.write(p.encode_serial_frame(kind, payload))

    def write(self, raw: bytes) -> None:
        os.write(self.master, raw)

    def _read(self) -> None:
        buf = b""
        while not self.stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.2)
            if not r:
                self.ota.tick()
                continue
            buf += os.read(self.master, 65536)
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                kind, payload = p.decode_serial_frame(line)
                self.got.append((kind, payload))
                if kind == p.OTA_OFFER:
                    self.ota.on_offer(payload)
                elif kind == p.OTA_CHUNK:
                    self.ota.on_chunk(payload)

    def close(self) -> None:
        self.stop.set()
        self.reader.join(2)
        os.close(self.master)
        os.close(self.slave)


def test_pty_node_publishes_telemetry_and_receives_an_ota(mosquitto, cloud, gateway_factory):
    nano = FakeNano()
    gw = gateway_factory(mosquitto.url, cloud.url, "--serial", nano.path).start()
    try:
        # pyserial flushes the port's input when it opens it, so frames written before the
        # gateway is listening are lost (as on a real board): announce until it is.
        def announced():
            nano.send(p.STATUS, p.encode(p.STATUS, p.status(NODE, "online", ts=1)))
            return cloud.records("status")
        wait_for(announced, 30, "the gateway to open the serial port", step=0.5)
        good = p.encode_serial_frame(p.TELEMETRY, p.encode(p.TELEMETRY, p.telemetry(NODE, [item(1), item(2)])))
        bad_crc = good[:-2] + (b"0" if good[-2:-1] != b"0" else b"1") + b"\n"     # last crc digit changed
        nano.write(bad_crc)                                             # bad_crc
        nano.write(good[:len(good) // 2] + b"\n")                       # truncated line: bad_value
        nano.write(b"TF1 " + b"A" * 9000 + b"\n")                       # over-long line: oversize
        nano.send(p.TELEMETRY, p.encode(p.TELEMETRY, p.telemetry("nano-2", [item(9)])))   # other node: spoofed
        nano.send(p.TELEMETRY, b'{"v": 1, "node": "nano-1"}')           # missing_field
        nano.write(good)
        sent_at = time.time() * 1000
        nano.send(p.TELEMETRY, p.encode(p.TELEMETRY, p.telemetry(NODE, [item(3, ts=61_000)])))   # an uptime
        wait_for(lambda: len(cloud.stored()) == 3, 20, "the Nano's telemetry")
        assert set(cloud.stored()) == {(NODE, 1), (NODE, 2), (NODE, 3)}
        ts3 = json.loads(cloud.db.execute("SELECT body FROM telemetry WHERE seq = 3").fetchone()[0])["ts"]
        assert sent_at - 1000 <= ts3 <= time.time() * 1000    # the gateway stamped the uptime on receipt
        assert cloud.records("status")[0]["node"] == NODE
        assert gw.drops() == {"bad_crc": 1, "bad_value": 1, "oversize": 1, "spoofed_node": 1, "missing_field": 1}

        blob = os.urandom(6000)
        sha = cloud.add_blob(blob)
        m = p.build_manifest(KEY, "fleet", "d-nano", "kws", 5, blob, 1024, [(b"\x00" * 4, b"\x10")])
        t0 = time.monotonic()
        cloud.add_event("deployment", {"deployment": "d-nano", "manifest": m, "nodes": [NODE],
                                       "blob_url": p.BLOB_PATH.format(sha256=sha), "node_manifests": {}})
        wait_for(lambda: any(s["state"] == p.UPDATED for s in cloud.records("ota_state")), 30, "the Nano UPDATED")
        assert nano.ota.blob == blob
        kinds = [k for k, _ in nano.got]
        assert kinds.count(p.OTA_OFFER) == 1 and kinds.count(p.OTA_CHUNK) >= 6
        print(f"serial: 3 records stored, drops {gw.drops()}, OTA of {len(blob)} B in {time.monotonic() - t0:.1f} s")
        assert gw.alive()
    finally:
        gw.stop()
        nano.close()
