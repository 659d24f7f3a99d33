"""Gateway settings in one place, so the CLI, the service and the tests agree on defaults."""
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from contract import protocol


@dataclass
class GatewayConfig:
    broker: str                      # mqtt://[user:password@]host[:port]
    cloud: str                       # http://host:port (base URL of the cloud API)
    site: str
    token: str = ""                  # bearer token with the `gateway` role
    broker_user: str = ""            # default: the gateway id when a password is given (ACL user gw-<site>)
    broker_password: str = ""
    gateway_id: str = ""             # MQTT client id and cloud gateway name; default gw-<site>
    serial: list[str] = field(default_factory=list)
    state_dir: Path = Path("var/gateway")
    metrics_port: int = 0            # 0: no metrics server
    metrics_host: str = "0.0.0.0"    # Prometheus scrapes the edge box from outside
    share_group: str = ""            # $share group for several gateways on one site; "" = a plain subscription
    batch_max: int = 2000            # records per ingest POST (contract allows 5,000)
    batch_interval: float = 0.1      # seconds a record may wait for a fuller batch
    queue_max_bytes: int = 256 * 1024 * 1024   # outbox payload bytes before drop_oldest kicks in
    ota_chunk_rate: float = 200.0    # OTA chunks per second, all nodes together
    backoff_max: float = 5.0         # longest pause between cloud retries

    def __post_init__(self) -> None:
        protocol._check_id(self.site, "site")
        if not self.gateway_id:
            self.gateway_id = "gw-" + self.site
        protocol._check_id(self.gateway_id, "gateway id")
        self.state_dir = Path(self.state_dir)
        self.cloud = self.cloud.rstrip("/")
        if urlsplit(self.cloud).scheme not in ("http", "https"):
            raise ValueError(f"--cloud must be an http(s) URL, got {self.cloud!r}")
        if urlsplit(self.broker).scheme not in ("mqtt", "tcp"):
            raise ValueError(f"--broker must be mqtt://host:port, got {self.broker!r}")
        if not 0 < self.batch_max <= protocol.MAX_BATCH_RECORDS:
            raise ValueError(f"batch_max must be 1..{protocol.MAX_BATCH_RECORDS}")

    def broker_parts(self) -> tuple[str, int, str | None, str | None]:
        """(host, port, username, password) from the broker URL."""
        u = urlsplit(self.broker)
        if u.username:
            return u.hostname or "127.0.0.1", u.port or 1883, u.username, u.password
        user = self.broker_user or (self.gateway_id if self.broker_password else None)
        return u.hostname or "127.0.0.1", u.port or 1883, user, self.broker_password or None
