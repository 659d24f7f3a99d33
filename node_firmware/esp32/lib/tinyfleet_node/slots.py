"""A/B model slots: two blob files and an active-slot pointer written atomically
(new file, sync, rename). Boot validates the active blob and falls back to the
other slot, so a power cut at any point leaves a node with a valid model.

Pointer: {"slot": 0|1, "version": int, "prev": slot or None, "prev_version",
"trial": bool (new model not yet confirmed), "boots": boots during the trial,
"deployment": the OTA deployment that installed it, or None}.
"""
from contract import blob as blobfmt

MAX_TRIAL_BOOTS = 3  # a new model that keeps the node rebooting is abandoned (power cuts aside)


class NoValidModel(Exception):
    pass


class Slots:
    def __init__(self, fs, paths, pointer_path):
        self.fs = fs
        self.paths = paths
        self.pointer_path = pointer_path
        self.pointer = None

    def check(self, i, name):
        """(blob, header) if slot i holds a blob that parses (crc32 included) and is
        model `name`, else None."""
        data = self.fs.read(self.paths[i])
        if data is None:
            return None
        try:
            hdr = blobfmt.parse(data)
        except Exception:
            return None
        if hdr["name"] != name:
            return None
        return data, hdr

    def _read_pointer(self):
        for p in (self.pointer_path, self.pointer_path + ".tmp"):
            ptr = self.fs.read_json(p)
            if isinstance(ptr, dict) and ptr.get("slot") in (0, 1):
                return ptr
        return None

    def write(self, ptr):
        self.fs.write_json(self.pointer_path, ptr)
        self.pointer = ptr

    def boot(self, name, power_lost=False):
        """Pick the slot to run. Returns (blob, header, event) with event None,
        "fallback" (the active blob was bad) or "trial_abandoned". A boot after a
        power loss does not count against a trial: the new model did not cause it."""
        ptr = self._read_pointer()
        event = None
        if ptr is not None and ptr.get("trial") and not power_lost:
            ptr["boots"] = ptr.get("boots", 0) + 1
            if ptr["boots"] > MAX_TRIAL_BOOTS and ptr.get("prev") in (0, 1) \
                    and self.check(ptr["prev"], name) is not None:
                ptr = self._previous(ptr)
                event = "trial_abandoned"
            self.write(ptr)
        if ptr is not None:
            got = self.check(ptr["slot"], name)
            if got is not None:
                self.pointer = ptr
                return got[0], got[1], event
            event = "fallback"
        best = None
        for i in (0, 1):
            got = self.check(i, name)
            if got is not None and (best is None or got[1]["model_version"] > best[2]["model_version"]):
                best = (i, got[0], got[1])
        if best is None:
            raise NoValidModel("no valid %r model blob in %s" % (name, ", ".join(self.paths)))
        i, data, hdr = best
        self.write({"slot": i, "version": hdr["model_version"], "prev": None, "prev_version": None,
                    "trial": False, "boots": 0, "deployment": None})
        return data, hdr, event

    def active(self):
        return self.pointer["slot"]

    def inactive(self):
        return 1 - self.pointer["slot"]

    def version(self):
        return self.pointer["version"]

    def forget_previous(self):
        """The inactive slot is about to be overwritten: it is no rollback target any more."""
        if self.pointer.get("prev") is not None:
            ptr = dict(self.pointer)
            ptr["prev"] = None
            ptr["prev_version"] = None
            self.write(ptr)

    def activate(self, slot, version, deployment):
        """Switch to `slot` on trial; the current slot becomes the rollback target."""
        cur = self.pointer
        self.write({"slot": slot, "version": version, "prev": cur["slot"], "prev_version": cur["version"],
                    "trial": True, "boots": 0, "deployment": deployment})

    def commit(self):
        ptr = dict(self.pointer)
        ptr["trial"] = False
        ptr["boots"] = 0
        self.write(ptr)

    def _previous(self, ptr):
        return {"slot": ptr["prev"], "version": ptr["prev_version"], "prev": None, "prev_version": None,
                "trial": False, "boots": 0, "deployment": None}

    def rollback(self):
        """Back to the previous slot; False if there is none."""
        ptr = self.pointer
        if ptr.get("prev") not in (0, 1):
            return False
        self.write(self._previous(ptr))
        return True
