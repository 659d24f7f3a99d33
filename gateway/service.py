"""Wires the gateway together and owns its lifetime: threads start here and stop
here, cleanly on SIGTERM/SIGINT (commit + ack what is in hand, one bounded last
upload, close the outbox). A SIGKILL loses nothing either: see queue.py."""
import logging
import signal
import threading

from gateway.config import GatewayConfig
from gateway.metrics import Metrics
from gateway.mqtt_in import MqttIn
from gateway.ota_relay import OtaRelay
from gateway.queue import Outbox
from gateway.serial_bridge import SerialBridge
from gateway.uplink import Uplink

log = logging.getLogger("gateway")
logging.getLogger("httpx").setLevel(logging.WARNING)


class Gateway:
    def __init__(self, cfg: GatewayConfig):
        self.cfg = cfg
        self.stop = threading.Event()
        self.metrics = Metrics()
        self.outbox = Outbox(cfg.state_dir / "outbox.sqlite", cfg.queue_max_bytes)
        self.uplink = Uplink(cfg, self.outbox, self.metrics)
        self.ota = OtaRelay(cfg, self.metrics)
        self.mqtt_in = MqttIn(cfg, self.outbox, self.metrics, self.ota.on_request, self.ota.on_state,
                              self.uplink.wake.set)
        self.serial = SerialBridge(cfg, self.metrics) if cfg.serial else None
        self.metrics.queue_depth.set(self.outbox.depth)
        self.metrics.health.update(gateway=cfg.gateway_id, site=cfg.site, queue_depth=self.outbox.depth)

    def run(self) -> None:
        """Blocks until SIGTERM/SIGINT (or stop.set())."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop.set())
        if self.cfg.metrics_port:
            port = self.metrics.serve(self.cfg.metrics_port, self.cfg.metrics_host)
            log.info("metrics on http://%s:%d/metrics", self.cfg.metrics_host, port)
        threads = [threading.Thread(target=self.mqtt_in.run, args=(self.stop,), name="mqtt-in"),
                   threading.Thread(target=self.uplink.run, args=(self.stop,), name="uplink")]
        for t in threads:
            t.start()
        self.ota.start(self.stop)
        if self.serial:
            self.serial.start(self.stop)
        log.info("gateway %s for site %s: broker %s, cloud %s", self.cfg.gateway_id, self.cfg.site,
                 self.cfg.broker, self.cfg.cloud)
        self.stop.wait()
        log.info("stopping")
        for t in threads:
            t.join(10)
        self.uplink.drain(3.0)
        if self.serial:
            self.serial.close()
        self.ota.close()
        self.metrics.close()
        self.outbox.close()
        log.info("stopped; %d records stay queued on disk", self.outbox.depth)
