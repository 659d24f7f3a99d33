"""Health and Prometheus metrics on a small HTTP port: /metrics and /healthz."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages_in = Counter("tinyfleet_gateway_messages_in", "Valid node messages received", ["kind"], registry=r)
        self.messages_out = Counter("tinyfleet_gateway_messages_out", "Records the cloud acknowledged", ["kind"], registry=r)
        self.dropped = Counter("tinyfleet_gateway_dropped", "Messages dropped, by reason", ["reason"], registry=r)
        self.duplicates = Counter("tinyfleet_gateway_duplicates", "Telemetry items already seen (node, seq)", registry=r)
        self.redelivered = Counter("tinyfleet_gateway_redelivered", "Broker redeliveries of messages already stored "
                                   "(their PUBACK died with the gateway)", registry=r)
        self.queue_depth = Gauge("tinyfleet_gateway_queue_depth", "Records waiting for the cloud", registry=r)
        self.queue_bytes = Gauge("tinyfleet_gateway_queue_bytes", "Payload bytes waiting for the cloud", registry=r)
        self.cloud_latency = Histogram("tinyfleet_gateway_cloud_latency_seconds", "Ingest POST round trip", registry=r,
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.cloud_errors = Counter("tinyfleet_gateway_cloud_errors", "Failed cloud calls, by kind", ["kind"], registry=r)
        self.blob_downloads = Counter("tinyfleet_gateway_blob_downloads", "Model blobs fetched from the cloud", registry=r)
        self.ota_chunks = Counter("tinyfleet_gateway_ota_chunks_sent", "OTA chunks sent to nodes", registry=r)
        self.ota_nodes = Gauge("tinyfleet_gateway_ota_nodes", "Nodes per deployment and last OTA state",
                               ["deployment", "state"], registry=r)
        self.mqtt_connected = Gauge("tinyfleet_gateway_mqtt_connected", "1 while the broker session is up", registry=r)
        self.health: dict = {"ok": True}
        self._server: ThreadingHTTPServer | None = None

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped.labels(reason).inc(n)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Starts the HTTP server in a daemon thread; returns the bound port."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path.startswith("/metrics"):
                    body, ctype = generate_latest(metrics.registry), CONTENT_TYPE_LATEST
                elif self.path.startswith("/healthz"):
                    body, ctype = json.dumps(metrics.health).encode(), "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
