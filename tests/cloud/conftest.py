"""Cloud fixtures: a real uvicorn server in a thread, on SQLite and on the local
PostgreSQL (every test that takes `cloud` runs on both), committed-style model folders
made from the repository's test models, and an SSE reader."""
from __future__ import annotations

import json
import queue
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest

from cloud_msgs import FLEET_KEY, GATEWAY, NODE_KEY, OPERATOR, TOKENS, VIEWER

ROOT = Path(__file__).resolve().parents[2]


def png_1x1() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


@pytest.fixture(scope="session")
def model_root(tmp_path_factory) -> Path:
    """models/sine/{1,2,3}/ with int8.tflite, model.tfmb (real converter), report.json, a plot."""
    from training import testmodels
    from training.export import make_blob
    root = tmp_path_factory.mktemp("models")
    sources = {1: "dense_sine", 2: "dense_sine_pt", 3: "dense_sine"}
    for version, src in sources.items():
        folder = root / "sine" / str(version)
        folder.mkdir(parents=True)
        tfl = testmodels.get(src)     # built and cached on first use
        (folder / "int8.tflite").write_bytes(tfl)
        (folder / "model.tfmb").write_bytes(make_blob(tfl, "sine", version))
        (folder / "report.json").write_text(json.dumps({"name": "sine", "version": version, "data": "generated",
                                                        "metrics": {"int8_mae_clean_grid": 0.05 + version / 100}}))
        (folder / "result.png").write_bytes(png_1x1())
    return root


class Cloud:
    """A running cloud: `url`, `client` (httpx, no auth), `settings`, `app`, `db`."""

    def __init__(self, app, settings, url):
        self.app, self.settings, self.url = app, settings, url
        self.db = app.state.db
        self.client = httpx.Client(base_url=url, timeout=30)

    def get(self, path, role=VIEWER, **kw):
        return self.client.get(path, headers=role, **kw)

    def post(self, path, role=OPERATOR, **kw):
        return self.client.post(path, headers=role, **kw)

    def patch(self, path, role=OPERATOR, **kw):
        return self.client.patch(path, headers=role, **kw)

    def ingest(self, body, **kw):
        return self.client.post("/api/v1/ingest", headers=GATEWAY, json=body, **kw)


def start_server(app) -> tuple[object, threading.Thread, str]:
    import uvicorn
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cloud.db'}"
    return request.getfixturevalue("postgres_url")


def make_settings(db_url, tmp_path, model_root, **over):
    from cloud.settings import Settings
    base = dict(db_url=db_url, data_dir=tmp_path / "data", models_dir=model_root, tokens=dict(TOKENS),
                fleet_key=FLEET_KEY, node_keys={"n-keyed": NODE_KEY}, engine_tick_s=0.05, sse_poll_s=0.05,
                drift_enabled=False, drift_check_s=0.1, golden_count=2)
    base.update(over)
    return Settings(**base)


@pytest.fixture
def cloud_factory(db_url, tmp_path, model_root):
    """Starts clouds with setting overrides; all are stopped at the end."""
    from cloud.app import create_app
    running = []

    def make(**over) -> Cloud:
        settings = make_settings(db_url, tmp_path, model_root, **over)
        app = create_app(settings)
        server, thread, url = start_server(app)
        c = Cloud(app, settings, url)
        running.append((server, thread, c))
        return c

    yield make
    for server, thread, c in running:
        c.client.close()
        server.should_exit = True
        thread.join(15)
        c.db.dispose()


@pytest.fixture
def cloud(cloud_factory) -> Cloud:
    return cloud_factory()


class SSEReader:
    """Follows an SSE URL in a thread, reconnecting with Last-Event-ID on idle timeouts;
    parsed events land in `events` (a queue of {"id", "event", "data"})."""

    def __init__(self, url: str, headers: dict):
        self.url, self.headers = url, headers
        self.events: queue.Queue = queue.Queue()
        self.last_id: str | None = None
        self.connects = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with httpx.Client(timeout=httpx.Timeout(5.0, read=1.0)) as client:
            while not self.stop.is_set():
                headers = dict(self.headers)
                if self.last_id:
                    headers["Last-Event-ID"] = self.last_id
                try:
                    with client.stream("GET", self.url, headers=headers) as r:
                        self.connects += 1
                        if r.status_code != 200:
                            self.events.put({"event": "http_error", "data": r.status_code, "id": None})
                            return
                        ev = {}
                        for line in r.iter_lines():
                            if self.stop.is_set():
                                return
                            if not line:
                                if "data" in ev:
                                    self.events.put({"id": ev.get("id"), "event": ev.get("event", "message"),
                                                     "data": json.loads(ev["data"])})
                                    if ev.get("id"):
                                        self.last_id = ev["id"]
                                ev = {}
                            elif not line.startswith(":"):
                                k, _, v = line.partition(":")
                                ev[k] = v[1:] if v.startswith(" ") else v
                except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError):
                    continue
                except httpx.ConnectError:
                    time.sleep(0.1)

    def next(self, kind: str | None = None, timeout: float = 10.0) -> dict:
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"no {kind or 'SSE'} event within {timeout} s")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if kind is None or e["event"] == kind:
                return e

    def close(self):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def sse():
    readers = []

    def open_(url, headers):
        r = SSEReader(url, headers)
        readers.append(r)
        return r

    yield open_
    for r in readers:
        r.close()
