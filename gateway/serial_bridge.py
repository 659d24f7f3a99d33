"""Bridge for BLE-only boards (Nano 33 BLE Sense): reads `TF1` line frames from serial
ports and publishes each node's messages under its own node id; writes that node's
ota/offer and ota/chunk traffic back as frames. To the rest of the gateway a
serial node is just another MQTT node, so validation, dedup and the OTA relay are
the same code. One node per port; a frame naming another node is dropped."""
import logging
import threading
import time

import paho.mqtt.client as mqtt
import serial

from contract import protocol as p
from gateway.config import GatewayConfig
from gateway.metrics import Metrics

log = logging.getLogger("gateway.serial")
BAUD = 115200
QOS = {p.HEARTBEAT: 0}


class SerialBridge:
    def __init__(self, cfg: GatewayConfig, metrics: Metrics):
        self.cfg, self.metrics = cfg, metrics
        self.ports: dict[str, "_Port"] = {}     # node id -> port
        host, port, user, password = cfg.broker_parts()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.gateway_id + "-serial")
        if user:
            self.mqtt.username_pw_set(user, password)
        self.mqtt.max_queued_messages_set(0)
        self.mqtt.on_message = self._from_broker
        self.mqtt.on_connect = self._on_connect
        self.mqtt.connect_async(host, port, keepalive=30)

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        self.mqtt.loop_start()
        threads = []
        for name in self.cfg.serial:
            t = threading.Thread(target=_Port(self, name).run, args=(stop,), name="serial " + name, daemon=True)
            t.start()
            threads.append(t)
        return threads

    def close(self) -> None:
        self.mqtt.loop_stop()
        self.mqtt.disconnect()

    def _on_connect(self, client, userdata, flags, rc, props=None) -> None:
        for node in list(self.ports):
            self._subscribe(node)

    def _subscribe(self, node: str) -> None:
        self.mqtt.subscribe([(p.topic(self.cfg.site, node, p.OTA_OFFER), 1),
                             (p.topic(self.cfg.site, node, p.OTA_CHUNK), 1)])

    def attach(self, node: str, port: "_Port") -> None:
        self.ports[node] = port
        self._subscribe(node)
        log.info("serial %s carries node %s", port.name, node)

    def _from_broker(self, client, userdata, m: mqtt.MQTTMessage) -> None:
        try:
            _, node, kind = p.parse_topic(m.topic)
        except p.ContractError:
            return
        port = self.ports.get(node)
        if port is not None:
            port.write(p.encode_serial_frame(kind, m.payload))

    def publish(self, node: str, kind: str, payload: bytes) -> None:
        self.mqtt.publish(p.topic(self.cfg.site, node, kind), payload, qos=QOS.get(kind, 1),
                          retain=(kind == p.STATUS))


class _Port:
    def __init__(self, bridge: SerialBridge, name: str):
        self.bridge, self.name = bridge, name
        self.node: str | None = None
        self.dev: serial.Serial | None = None
        self._wlock = threading.Lock()

    def write(self, frame: bytes) -> None:
        with self._wlock:
            if self.dev is not None:
                try:
                    self.dev.write(frame)
                except (OSError, serial.SerialException) as e:
                    log.warning("serial %s write failed: %s", self.name, e)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.dev = serial.serial_for_url(self.name, baudrate=BAUD, timeout=0.2)
            except (OSError, serial.SerialException) as e:
                log.warning("serial %s: %s", self.name, e)
                stop.wait(2.0)
                continue
            try:
                self._read(stop)
            except (OSError, serial.SerialException) as e:
                log.warning("serial %s lost: %s", self.name, e)
            finally:
                with self._wlock:
                    self.dev.close()
                    self.dev = None
            if self.node and not stop.is_set():
                self.bridge.publish(self.node, p.STATUS, p.last_will(self.node))
            stop.wait(1.0)

    def _read(self, stop: threading.Event) -> None:
        dev = self.dev
        assert dev is not None
        buf, skipping = b"", False
        while not stop.is_set():
            data = dev.read(4096)
            if not data:
                continue
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if skipping:          # tail of an over-long line: never guess at it
                    skipping = False
                    continue
                self.frame(line)
            if len(buf) > p.MAX_SERIAL_LINE:
                self.bridge.metrics.drop("oversize")
                buf, skipping = b"", True

    def frame(self, line: bytes) -> None:
        m = self.bridge.metrics
        if not line.strip():
            return
        try:
            kind, payload = p.decode_serial_frame(line)
        except p.ContractError as e:
            m.drop(e.reason)
            return
        if kind not in p.NODE_TO_CLOUD:
            m.drop("bad_topic")
            return
        try:
            msg = p.decode(kind, payload)
        except p.ContractError as e:
            m.drop(e.reason)
            return
        node = msg["node"]
        if self.node is None:
            self.node = node
            self.bridge.attach(node, self)
        elif node != self.node:
            m.drop("spoofed_node")
            return
        stamped = p.stamp_uptime(kind, msg, time.time_ns() // 1_000_000)   # a board without a clock
        self.bridge.publish(node, kind, payload if stamped is None else p.encode(kind, stamped))
