"""The node's flash as a directory on the host, with a power-cut hook: every
mutation (write, rename, remove) is counted and the N-th can raise PowerCut,
optionally after writing only half of its data (a torn write). `cut_if(op, path)`
picks the point by name instead, e.g. the rename of the slot pointer."""
from tinyfleet_node.hal import Storage


class PowerCut(BaseException):
    """The simulated board lost power. BaseException: no `except Exception` in the
    app may swallow it."""


class SimStorage(Storage):
    def __init__(self, root, cut_at=None, torn=False, cut_if=None):
        Storage.__init__(self, str(root).rstrip("/"))
        self.ops = 0
        self.cut_at = cut_at
        self.cut_if = cut_if
        self.full_if = None   # f(op, path) -> True makes that mutation fail with OSError (flash full)
        self.torn = torn
        self.log = []

    def _sync(self, f):
        f.flush()  # the host page cache outlives a simulated power cut; skip the system-wide sync

    def _cut_now(self):
        return self.cut_at is not None and self.ops + 1 == self.cut_at

    def before(self, op, path):
        self.ops += 1
        self.log.append((op, path))
        if self.full_if is not None and self.full_if(op, path):
            raise OSError(28, "ENOSPC: simulated full or failing flash at %s %s" % (op, path))
        if (self.cut_at is not None and self.ops == self.cut_at) or (self.cut_if is not None and self.cut_if(op, path)):
            raise PowerCut("power cut before %s %s (op %d)" % (op, path, self.ops))

    def _torn(self, op, p, write):
        self.ops += 1
        self.log.append((op, p))
        write()
        raise PowerCut("power cut in the middle of %s %s (op %d)" % (op, p, self.ops))

    def write_file(self, p, data):
        if self.torn and self._cut_now():
            self._torn("write", p, lambda: open(self.root + p, "wb").write(data[:len(data) // 2]))
        Storage.write_file(self, p, data)

    def write_at(self, p, offset, data):
        if self.torn and self._cut_now():
            def half():
                with open(self.root + p, "r+b" if self.exists(p) else "wb") as f:
                    f.seek(offset)
                    f.write(data[:len(data) // 2])
            self._torn("write", p, half)
        Storage.write_at(self, p, offset, data)
