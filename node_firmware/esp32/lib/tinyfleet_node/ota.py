"""OTA client: offer checks, chunked download into the inactive slot with resume,
sha256 verify, golden-vector self-test, atomic switch, trial and rollback.

Every step is persisted before it is taken and every step is idempotent, so the
node can lose power anywhere and continue (or roll back) after the reboot:
  QUEUED -> DOWNLOADING -> DOWNLOADED -> VERIFIED -> UPDATING -> UPDATED
  or FAILED(reason), or ROLLED_BACK(reason) when the new model fails on trial.
Progress file: {"job": {"dep", "slot", "next", "state"} or None, "done": [[dep, state, reason], ...]};
the manifest of the running job is kept in its own file (written once).
"""
import binascii
import hashlib

from contract import protocol as P

KEEP_DONE = 4  # finished deployments remembered, so a retained offer is not run twice


def golden_vectors(m):
    """P.golden_vectors, but feeding bytes to a2b_base64: some MicroPython builds
    (the WebAssembly one) ship a pure-Python binascii that refuses str."""
    return [(binascii.a2b_base64(i.encode()), binascii.a2b_base64(o.encode())) for i, o in m["golden"]]


def _safe_ids(m):
    """(deployment, model, version) for a report about a manifest that may be broken."""
    if not isinstance(m, dict):
        m = {}
    dep = m.get("deployment")
    model = m.get("model")
    ver = m.get("version")
    return (dep if isinstance(dep, str) and dep else "unknown",
            model if isinstance(model, str) and model else "unknown",
            ver if isinstance(ver, int) and ver is not True and ver is not False else 0)


class Ota:
    def __init__(self, node):
        self.node = node
        self.cfg = node.cfg
        self.fs = node.fs
        self.slots = node.slots
        self.path = self.cfg["state_dir"] + "/ota.json"
        self.manifest_path = self.cfg["state_dir"] + "/ota_manifest.json"
        st = self.fs.read_json(self.path)
        if not isinstance(st, dict):
            st = {}
        self.job = st.get("job")
        self.done = st.get("done") or []
        self.m = None
        self.reported = []        # deployments whose final state was re-reported this boot
        self.trial_left = None
        self.pending = None       # an offer that came in while a new model was on trial
        self.req_end = 0
        self.ahead = []           # chunk indices past the prefix already written (RAM only)
        self.rerequested_at = -1
        self.last_rx = 0
        self.retries = 0
        # counters for tests and the heartbeat log
        self.received = 0         # chunk data bytes delivered this boot (duplicates included)
        self.stored = 0           # chunk data bytes written to the slot this boot
        self.crc_errors = 0
        self.history = []         # (state, reason) reported this boot

    # ------------------------------------------------------------ persistence, reports
    def _save(self):
        self.fs.write_json(self.path, {"job": self.job, "done": self.done})

    def _report(self, m, state, reason=None, progress=None):
        dep, model, ver = _safe_ids(m)
        msg = P.ota_state(self.cfg["node_id"], dep, model, ver, state, reason, progress, self.node.hal.epoch_ms())
        self.history.append((state, reason))
        self.node.send(P.OTA_STATE, P.encode(P.OTA_STATE, msg))

    def _step(self, state, progress=None):
        self.job["state"] = state
        self._save()
        self._report(self.m, state, None, progress)

    def _finish(self, state, reason=None):
        self.done.append([self.job["dep"], state, reason])
        self.done = self.done[-KEEP_DONE:]
        self.job = None
        self.trial_left = None
        self._save()
        self._report(self.m, state, reason)
        if self.pending is not None:
            payload = self.pending
            self.pending = None
            self.on_offer(payload)

    def _fail(self, reason):
        slot = self.job["slot"]
        if self.slots.active() != slot:
            self.fs.remove(self.cfg["slots"][slot])  # never leave a half or bad blob around
        self._finish(P.FAILED, reason)

    def storage_error(self):
        """A flash write failed somewhere in a step: fail the job rather than the node."""
        if self.job is None:
            return
        try:
            if self.slots.pointer.get("trial") and self.slots.active() == self.job["slot"]:
                self._rollback("storage")
            else:
                self._fail("storage")
        except OSError:
            self.job = None
            self.trial_left = None

    # ------------------------------------------------------------ offers
    def _key(self, m):
        name = "hmac_key" if m["key"] == "fleet" else ("node_key" if m["key"] == "node" else None)
        if name is None or self.cfg[name] is None:
            return None
        return binascii.unhexlify(self.cfg[name])

    def check(self, m):
        """None if the offer may be installed, else the FAILED reason."""
        key = self._key(m)
        if key is None:
            return "bad_hmac"
        try:
            P.verify_manifest(m, key)
        except Exception:
            return "bad_hmac"
        if m["model"] != self.cfg["model"]:
            return "wrong_model"
        active = self.slots.version()
        if m["version"] == active or (m["version"] < active and not m["rollback"]):
            return "downgrade"
        if m["min_runtime"] > P.RUNTIME_VERSION:
            return "runtime_too_old"
        if m["size"] > self.cfg["max_blob"]:
            return "too_large"
        if m["chunk_size"] > P.MAX_CHUNK_DATA:
            return "bad_manifest"
        return None

    def on_offer(self, payload):
        try:
            m = P.decode(P.OTA_OFFER, payload)
        except Exception:  # ContractError (any other error is refused the same way)
            try:
                import json
                m = json.loads(payload)
            except Exception:
                m = {}
            self._report(m, P.FAILED, "bad_manifest")
            return
        dep = m["deployment"]
        for d in self.done:
            if d[0] == dep:
                if dep not in self.reported:  # the gateway may have missed it: say it once per boot
                    self.reported.append(dep)
                    self._report(m, d[1], d[2])
                return
        if self.job is not None and self.job["dep"] == dep:
            return  # the retained offer again: already on it
        if self.job is not None and self.job["state"] == P.UPDATING:
            self.pending = payload  # the model on trial decides first; its old slot is the way back
            return
        reason = self.check(m)
        if reason is not None:
            self.done.append([dep, P.FAILED, reason])
            self.done = self.done[-KEEP_DONE:]
            self._save()
            self._report(m, P.FAILED, reason)
            return
        if self.job is not None:
            self._fail("aborted")  # a newer deployment replaces the running one
        self.fs.write_json(self.manifest_path, m)
        self.m = m
        self.job = {"dep": dep, "slot": self.slots.inactive(), "next": 0, "state": P.QUEUED}
        self._save()
        self._report(m, P.QUEUED)
        self._start_download()

    # ------------------------------------------------------------ download
    def _n_chunks(self):
        return P.chunk_count(self.m["size"], self.m["chunk_size"])

    def _start_download(self):
        self.slots.forget_previous()
        if self.job["next"] == 0:
            self.fs.remove(self.cfg["slots"][self.job["slot"]])  # an older, longer blob must not linger
        self.retries = 0
        self._step(P.DOWNLOADING, 0.0)
        if self.node.connected:
            self._request()

    def _request(self):
        """Ask for the next window of chunks after the contiguous prefix."""
        nxt = self.job["next"]
        self.ahead = []
        count = min(self.cfg["ota_window"], self._n_chunks() - nxt)
        self.req_end = nxt + count
        self._send_request(nxt, count)

    def _send_request(self, index, count):
        self.last_rx = self.node.hal.ticks_ms()
        msg = P.chunk_request(self.cfg["node_id"], self.job["dep"], index, count)
        self.node.send(P.OTA_REQUEST, P.encode(P.OTA_REQUEST, msg))

    def _rerequest(self):
        if self.rerequested_at != self.job["next"]:
            self.rerequested_at = self.job["next"]
            self._request()

    def on_chunk(self, payload):
        if self.job is None or self.job["state"] != P.DOWNLOADING:
            return
        try:
            bid, index, data = P.decode_chunk(payload)
        except Exception:  # bad crc, header or length: drop it and ask again from the gap
            self.crc_errors += 1
            self._rerequest()
            return
        if bid != P.blob_id(self.m["sha256"]):
            return  # a chunk of another blob
        self.received += len(data)
        nxt = self.job["next"]
        n = self._n_chunks()
        if index < nxt or index >= n or index in self.ahead:
            return  # a repeat
        cs = self.m["chunk_size"]
        if len(data) != min(cs, self.m["size"] - index * cs):
            self._rerequest()
            return
        try:
            self.fs.write_at(self.cfg["slots"][self.job["slot"]], index * cs, data)
        except OSError:
            self._fail("storage")
            return
        self.stored += len(data)
        self.last_rx = self.node.hal.ticks_ms()
        self.retries = 0
        if index > nxt:
            # A gap: keep this chunk (written in place; only the contiguous prefix is
            # trusted after a reboot) and ask once for just the missing ones.
            self.ahead.append(index)
            if self.rerequested_at != nxt:
                self.rerequested_at = nxt
                self._send_request(nxt, index - nxt)
            return
        nxt += 1
        while nxt in self.ahead:
            self.ahead.remove(nxt)
            nxt += 1
        self.job["next"] = nxt
        self._save()
        if nxt == n:
            self._step(P.DOWNLOADED, 1.0)
            self._verify()
        elif nxt >= self.req_end:
            self._request()

    def tick(self):
        """Re-request when chunks stop coming, waiting twice as long after each silent
        try (a busy gateway is not flooded with repeats); give up after ota_retries."""
        if self.job is None or self.job["state"] != P.DOWNLOADING or not self.node.connected:
            return
        hal = self.node.hal
        wait = self.cfg["ota_timeout_ms"] << min(self.retries, 4)
        if hal.ticks_diff(hal.ticks_ms(), self.last_rx) > wait:
            self.retries += 1
            if self.retries > self.cfg["ota_retries"]:
                self._fail("timeout")
            else:
                self.rerequested_at = -1
                self._request()

    def on_connect(self):
        if self.job is not None and self.job["state"] == P.DOWNLOADING:
            self.rerequested_at = -1
            self._request()

    # ------------------------------------------------------------ verify, switch, trial
    def _verify(self):
        path = self.cfg["slots"][self.job["slot"]]
        h = hashlib.sha256()
        try:
            f = self.fs.open_read(path)
            try:
                while True:
                    piece = f.read(1024)
                    if not piece:
                        break
                    h.update(piece)
            finally:
                f.close()
        except OSError:
            self._fail("storage")
            return
        if self.fs.size(path) != self.m["size"] or binascii.hexlify(h.digest()).decode() != self.m["sha256"]:
            self._fail("bad_sha256")
            return
        got = self.slots.check(self.job["slot"], self.cfg["model"])
        if got is None:
            self._fail("self_test")  # signed, intact, but not a loadable blob of this model
            return
        self._step(P.VERIFIED)
        self._switch()

    def _switch(self):
        self._step(P.UPDATING)
        self.slots.activate(self.job["slot"], self.m["version"], self.job["dep"])
        self._self_test()

    def _self_test(self):
        got = self.slots.check(self.job["slot"], self.cfg["model"])
        try:
            if got is None:
                raise ValueError("new slot does not hold a valid blob")
            inf = self.node.use_model(got[0], self.m["version"])
            for inp, out in golden_vectors(self.m):
                if bytes(inf.model.invoke(inp)) != out:
                    raise ValueError("golden vector mismatch")
        except Exception:
            self._rollback("self_test")
            return
        self.trial_left = self.cfg["trial_inferences"]
        if self.trial_left <= 0:
            self._commit()

    def after_inference(self, ok):
        """The app reports each inference; the first N on a new model decide its fate."""
        if self.trial_left is None or self.job is None:
            return
        if not ok:
            self._rollback("inference_errors")
            return
        self.trial_left -= 1
        if self.trial_left <= 0:
            self._commit()

    def _commit(self):
        self.slots.commit()
        self._finish(P.UPDATED)

    def _rollback(self, reason):
        self.slots.rollback()
        self.node.reload_active()
        self._finish(P.ROLLED_BACK, reason)

    # ------------------------------------------------------------ after a reboot
    def resume(self, boot_event=None):
        """Continue the job the node was on when it lost power."""
        if self.job is None:
            return
        m = self.fs.read_json(self.manifest_path)
        if not isinstance(m, dict) or m.get("deployment") != self.job["dep"]:
            self.job = None
            self._save()
            return
        self.m = m
        state = self.job["state"]
        if state == P.QUEUED:
            self._start_download()
        elif state == P.DOWNLOADING:
            cs = m["chunk_size"]
            have = max(self.fs.size(self.cfg["slots"][self.job["slot"]]), 0) // cs
            if have < self.job["next"]:
                self.job["next"] = have
                self._save()
        elif state == P.DOWNLOADED:
            self._verify()
        elif state == P.VERIFIED:
            self._switch()
        elif state == P.UPDATING:
            ptr = self.slots.pointer
            if ptr["slot"] == self.job["slot"]:
                if ptr["trial"]:
                    self._self_test()
                else:
                    self._finish(P.UPDATED)
            elif boot_event == "trial_abandoned":
                self._finish(P.ROLLED_BACK, "inference_errors")
            else:
                self._switch()
