"""One site's back end as real child processes: a private mosquitto, the cloud
(SQLite under `work`) and one gateway, with fresh tokens and a fresh fleet key.
The benchmarks and the reliability suite drive a simulated fleet against it and
break its parts (`Service.pause/kill`, `Mosquitto.stop/start`)."""
import secrets
from pathlib import Path

import httpx


class Stack:
    def __init__(self, work: Path, site: str, models: Path = Path("models"), cloud_env: dict | None = None,
                 gateway_args: tuple = ()):
        from tinyfleet.broker import Mosquitto, free_port
        from tinyfleet.procs import Service, tinyfleet_argv

        self.work, self.site = Path(work), site
        self.key = secrets.token_hex(32)
        self.tokens = {r: secrets.token_urlsafe(12) for r in ("operator", "gateway")}
        self.broker = Mosquitto(self.work / "broker")
        port, mport = free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.metrics_url = f"http://127.0.0.1:{mport}/metrics"
        env = {"TINYFLEET_TOKENS": ",".join(f"{r}:{t}" for r, t in self.tokens.items()),
               "TINYFLEET_FLEET_KEY": self.key, "TINYFLEET_DRIFT_ENABLED": "0", **(cloud_env or {})}
        self.cloud = Service("cloud", tinyfleet_argv("cloud", "serve", "--port", str(port), "--no-worker",
                                                     "--models", str(models), "--data", str(self.work / "cloud")),
                             self.work / "logs", env=env, health_url=self.url + "/readyz")
        self.gateway = Service("gateway", tinyfleet_argv(
            "gateway", "run", "--broker", self.broker.url, "--cloud", self.url, "--site", site,
            "--state-dir", str(self.work / "gateway"), "--metrics-port", str(mport),
            "--metrics-host", "127.0.0.1", *gateway_args),
            self.work / "logs", env={"TINYFLEET_GATEWAY_TOKEN": self.tokens["gateway"]},
            health_url=f"http://127.0.0.1:{mport}/healthz")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens['operator']}"},
                                 timeout=30)

    def start(self) -> "Stack":
        self.broker.start()
        self.cloud.start().wait_healthy(120)
        self.gateway.start().wait_healthy(60)
        return self

    def stop(self) -> None:
        self.http.close()
        self.gateway.stop()
        self.cloud.stop()
        self.broker.stop()

    def known_nodes(self, **params) -> int:
        return len(self.http.get("/api/v1/nodes", params={"site": self.site, **params}).json())

    def gateway_metric(self, name: str) -> float:
        """Sum of a gateway Prometheus series over its labels."""
        return _metric(httpx.get(self.metrics_url, timeout=10).text, name)

    def cloud_metric(self, name: str) -> float:
        return _metric(self.http.get("/metrics").text, name)


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))
