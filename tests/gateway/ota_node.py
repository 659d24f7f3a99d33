"""A small node-side OTA client for the tests (node_firmware/ has none yet): verifies the
signed offer, asks for chunk windows, checks each chunk's crc and the blob's sha256,
and reports the contract's execution states. Transport-agnostic: `send(kind, payload)`
is MQTT for Wi-Fi nodes and a serial line for the Nano 33 stand-in."""
import hashlib
import threading
import time

from contract import protocol as p

WINDOW = 8


class OtaClient:
    def __init__(self, node: str, key: bytes, send):
        self.node, self.key, self.send = node, key, send
        self.m: dict | None = None
        self.chunks: dict[int, bytes] = {}
        self.window = (0, 0)
        self.state = None
        self.blob: bytes | None = None
        self.last_progress = time.monotonic()
        self.lock = threading.Lock()
        self.bad_chunks = 0

    def _state(self, state: str, reason: str | None = None) -> None:
        self.state = state
        m = self.m or {"deployment": "none", "model": "none", "version": 0}
        self.send(p.OTA_STATE, p.encode(p.OTA_STATE, p.ota_state(self.node, m["deployment"], m["model"], m["version"],
                                                                 state, reason=reason)))

    def on_offer(self, payload: bytes) -> None:
        if not payload:          # offer cleared (cancel)
            return
        with self.lock:
            m = p.decode(p.OTA_OFFER, payload)
            if self.m and (self.m["deployment"], self.m["sha256"]) == (m["deployment"], m["sha256"]):
                return          # the same offer again (retained, re-published): nothing new
            self.m, self.chunks, self.blob = m, {}, None
            try:
                p.verify_manifest(m, self.key)
            except p.ContractError:
                self._state(p.FAILED, "bad_hmac")
                return
            self._state(p.DOWNLOADING)
            self._request(0)

    def _request(self, index: int) -> None:
        n = p.chunk_count(self.m["size"], self.m["chunk_size"])
        self.window = (index, min(WINDOW, n - index))
        self.last_progress = time.monotonic()
        self.send(p.OTA_REQUEST, p.encode(p.OTA_REQUEST, p.chunk_request(self.node, self.m["deployment"], *self.window)))

    def on_chunk(self, payload: bytes) -> None:
        with self.lock:
            if self.m is None or self.state != p.DOWNLOADING:
                return
            try:
                bid, index, data = p.decode_chunk(payload)
            except p.ContractError:
                self.bad_chunks += 1       # dropped; the window is re-requested on timeout
                return
            if bid != p.blob_id(self.m["sha256"]):
                return
            self.chunks[index] = data
            self.last_progress = time.monotonic()
            start, count = self.window
            if all(i in self.chunks for i in range(start, start + count)):
                n = p.chunk_count(self.m["size"], self.m["chunk_size"])
                if start + count < n:
                    self._request(start + count)
                else:
                    self._finish(n)

    def _finish(self, n: int) -> None:
        blob = b"".join(self.chunks[i] for i in range(n))
        if hashlib.sha256(blob).hexdigest() != self.m["sha256"]:
            self._state(p.FAILED, "bad_sha256")
            return
        self.blob = blob
        for s in (p.DOWNLOADED, p.VERIFIED, p.UPDATING, p.UPDATED):
            self._state(s)

    def tick(self) -> None:
        """Re-request the current window when chunks stopped coming (lost or corrupt)."""
        with self.lock:
            if self.state == p.DOWNLOADING and time.monotonic() - self.last_progress > 2.0:
                self._request(self.window[0])
