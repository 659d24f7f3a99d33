"""TFLM (PyPI tflite-micro) as the golden reference: run int8 inputs through it.

An arena that is too small segfaults the whole process, so the arena size is
found in a child process first (cached by model hash); the caller's own process
only ever runs TFLM with an arena the child proved sufficient.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parents[1] / "var" / "tflm_arena"

_PROBE = r"""
import os, sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], 'rb').read()

def run(arena):
    it = runtime.Interpreter.from_bytes(data, arena_size=arena)
    d = it.get_input_details(0)
    it.set_input(np.zeros(d['shape'], d['dtype']), 0)
    it.invoke()

def works(arena):
    # A fresh process per attempt: a failed allocation leaves TFLM unusable or crashes.
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        try:
            run(arena)
        except BaseException:
            os._exit(1)
        os._exit(0)
    return os.waitpid(pid, 0)[1] == 0

big = int(sys.argv[2])
if not works(big):
    run(big)  # let the error reach stderr
    sys.exit(3)
lo, hi = 0, big
while hi - lo > 16:
    mid = (lo + hi) // 32 * 16
    if works(mid):
        hi = mid
    else:
        lo = mid
print("ARENA", hi)
"""


class TFLMError(RuntimeError):
    """TFLM could not load or run the model."""


def _probe(tflite_bytes: bytes, arena: int) -> subprocess.CompletedProcess:
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(tflite_bytes)
        f.flush()
        return subprocess.run([sys.executable, "-c", _PROBE, f.name, str(arena)],
                              capture_output=True, text=True, timeout=120)


def _probe_model(tflite_bytes: bytes) -> int:
    """Smallest arena (16-byte steps) with which TFLM loads and invokes the model."""
    key = hashlib.sha256(tflite_bytes).hexdigest()[:24]
    cached = CACHE / key
    if cached.exists():
        return int(cached.read_text())
    r = _probe(tflite_bytes, max(1 << 20, 20 * len(tflite_bytes)))
    m = re.search(r"ARENA (\d+)", r.stdout)
    if r.returncode != 0 or not m:
        tail = (r.stderr or r.stdout or "no output").strip().splitlines()[-3:]
        raise TFLMError("TFLM could not run the model (exit %d): %s" % (r.returncode, " | ".join(tail)))
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp%d" % os.getpid())
    tmp.write_text(m.group(1))
    tmp.replace(cached)
    return int(m.group(1))


def find_arena_size(tflite_bytes: bytes) -> int:
    """Smallest tensor arena (to 16 bytes) with which TFLM runs this model.

    Found by bisection in a child process (each attempt in its own fork), so a
    model that crashes TFLM raises TFLMError here instead of killing the caller.
    """
    return _probe_model(tflite_bytes)


def interpreter(tflite_bytes: bytes):
    """A TFLM interpreter with an arena a child process has proven sufficient."""
    from tflite_micro.python.tflite_micro import runtime
    return runtime.Interpreter.from_bytes(tflite_bytes, arena_size=_probe_model(tflite_bytes))


def run_batch(tflite_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """N int8 inputs (any trailing shape with the right size) -> (N, output_size) int8 from TFLM."""
    it = interpreter(tflite_bytes)
    d = it.get_input_details(0)
    if d["dtype"] != np.int8:
        raise TFLMError("model input is %s, not int8" % np.dtype(d["dtype"]).name)
    shape = tuple(int(x) for x in d["shape"])
    inputs = np.asarray(inputs, dtype=np.int8)
    rows = inputs.reshape(inputs.shape[0], -1)
    outs = []
    for r in rows:
        it.set_input(r.reshape(shape), 0)
        it.invoke()
        outs.append(np.asarray(it.get_output(0)).reshape(-1).astype(np.int8))
    return np.stack(outs) if outs else np.zeros((0, 0), np.int8)


def input_size(tflite_bytes: bytes) -> int:
    d = interpreter(tflite_bytes).get_input_details(0)
    return int(np.prod(d["shape"]))
