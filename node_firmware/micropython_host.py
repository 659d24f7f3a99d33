"""CPython side of the MicroPython runtime: run node code in the real MicroPython
interpreter (WebAssembly build under Node, node_firmware/wasm/run.mjs).

One Node process per call (its start-up costs ~0.3 s), so batches of inputs go
through one process: inputs and outputs travel as files in its in-memory FS.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "node_firmware" / "wasm" / "run.mjs"
MP_LIB = ROOT / "node_firmware" / "micropython"
CONTRACT = ROOT / "contract"


class MicroPythonError(RuntimeError):
    """The script raised under MicroPython; the message ends with its traceback."""


def run_script(script: str, files: dict[str, bytes] | None = None, fetch: tuple[str, ...] = (),
               heap: str = "512k", timeout: float = 600, then: tuple[str, ...] = ()) -> tuple[str, dict[str, bytes]]:
    """Run MicroPython source `script` with tfmicro/float_mlp and contract/ on sys.path.

    files: in-FS path -> bytes to provide; fetch: in-FS paths to bring back; then: more
    sources run afterwards in the same interpreter (the wasm build only frees garbage
    between runs, see run.mjs).
    Returns (stdout, {path: bytes}). Raises MicroPythonError on a non-zero exit.
    """
    node = shutil.which("node")
    if node is None:
        raise MicroPythonError("node is not installed (needed for the MicroPython wasm build)")
    with tempfile.TemporaryDirectory(prefix="tf-mpy-") as tmp:
        t = Path(tmp)
        cmd = [node, str(RUNNER), "--heap", heap,
               "--mount", "%s:/lib" % MP_LIB, "--mount", "%s:/lib/contract" % CONTRACT]
        for i, (mp_path, data) in enumerate((files or {}).items()):
            host = t / ("in%d.bin" % i)
            host.write_bytes(data)
            cmd += ["--file", "%s:%s" % (host, mp_path)]
        back = {}
        for i, mp_path in enumerate(fetch):
            back[mp_path] = t / ("out%d.bin" % i)
            cmd += ["--fetch", "%s:%s" % (mp_path, back[mp_path])]
        for i, src in enumerate(then):
            (t / ("then%d.py" % i)).write_text(src)
            cmd += ["--then", str(t / ("then%d.py" % i))]
        (t / "main.py").write_text(script)
        cmd.append(str(t / "main.py"))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise MicroPythonError("MicroPython exited with %d:\n%s" % (proc.returncode, proc.stderr.strip()))
        return proc.stdout, {k: v.read_bytes() for k, v in back.items() if v.exists()}


_BATCH = """
import tfmicro
m = tfmicro.Model('/data/model.bin')
n = m.input_size
with open('/data/in.bin', 'rb') as f:
    data = f.read()
with open('/data/out.bin', 'wb') as f:
    for k in range(0, len(data), n):
        f.write(m.invoke(data[k:k + n]))
"""


def run_batch(blob: bytes, inputs: np.ndarray) -> np.ndarray:
    """N int8 inputs -> (N, output_size) int8 outputs of tfmicro under real MicroPython."""
    rows = np.asarray(inputs).reshape(len(inputs), -1)
    if rows.dtype != np.int8:
        if rows.size and (rows.min() < -128 or rows.max() > 127):
            raise ValueError("inputs must be int8 values")
        rows = rows.astype(np.int8)
    _, got = run_script(_BATCH, {"/data/model.bin": bytes(blob), "/data/in.bin": rows.tobytes()},
                        fetch=("/data/out.bin",))
    out = np.frombuffer(got.get("/data/out.bin", b""), dtype=np.int8)
    return out.reshape(len(rows), -1) if len(rows) else out.reshape(0, 0)


def float_layers(blob: bytes) -> list[tuple[list, list, str]]:
    """The blob's dense net as float layers for float_mlp: same shapes and activations,
    weights = int8 weight / 64 (speed does not depend on the values; outputs are not compared).
    Raises ValueError for a blob with ops other than FULLY_CONNECTED, RESHAPE and activations."""
    from contract import blob as B

    hdr = B.parse(blob)
    acts = {B.OP_LOGISTIC: "sigmoid", B.OP_TANH: "tanh", B.OP_SOFTMAX: "softmax"}
    layers: list[tuple[list, list, str]] = []
    for op, off, _ in B.ops(blob, hdr):
        if op == B.OP_FULLY_CONNECTED:
            _, _, lo, _, _, n_in, n_out, _, _, bo, wo = B.fc_fields(blob, off)
            w = np.frombuffer(blob, np.int8, n_in * n_out, wo).reshape(n_out, n_in) / 64.0
            b = np.frombuffer(blob, "<i4", n_out, bo) / 65536.0
            layers.append((w.tolist(), b.tolist(), "relu" if lo > -128 else "linear"))
        elif op in acts and layers:
            w, b, _ = layers[-1]
            layers[-1] = (w, b, acts[op])
        elif op != B.OP_RESHAPE:
            raise ValueError("%s is not a dense net (has %s)" % (hdr["name"], B.OP_NAMES[op]))
    return layers


_BENCH = """
import gc, json
import tfmicro, float_mlp
try:
    from runhost import cpu_us  # process CPU time (run.mjs): steady on a shared machine
except ImportError:
    from time import ticks_us as cpu_us
ROUND_US = %d
m = tfmicro.Model('/data/model.bin')
try:
    net = float_mlp.load('/data/float.json')
except OSError:  # not a dense net: int8 only
    net = None
with open('/data/in.bin', 'rb') as f:
    data = f.read()
n = m.input_size
xs = [data[k:k + n] for k in range(0, len(data), n)]
fxs = [[(v - 256 if v > 127 else v) / 64.0 for v in x] for x in xs]
runs = {'int8': lambda: [m.invoke(x) for x in xs]}
if net:
    runs['float'] = lambda: [net.predict(x) for x in fxs]
    runs['float_loop'] = lambda: [net.predict_loop(x) for x in fxs]
best = {}
for name in list(runs) * 2:
    gc.collect()
    done = 0
    t = cpu_us()
    while True:
        runs[name]()
        done += len(xs)
        us = cpu_us() - t
        if us >= ROUND_US:
            break
    best[name] = max(best.get(name, 0), done * 1e6 / us)
print(json.dumps({'per_s': best, 'ram_bytes': m.ram_bytes}))
"""


def bench(blob: bytes, layers: list | None = None, n_inputs: int = 20, round_ms: int = 400,
          with_float: bool = True) -> dict:
    """Inferences/s of tfmicro (int8) vs float_mlp (same dense net, float lists) in one wasm run.

    `ratio` is against float_mlp's AI-ANNE style layer (the baseline), `ratio_vs_float_loop`
    against its hand-tuned index-loop twin. layers: float_mlp layers [(w[out][in], b[out], act)],
    default float_layers(blob); with_float=False measures int8 only (any blob).
    Each side runs n_inputs seeded random inputs over and over for at least round_ms of CPU
    time, in two alternating rounds; the faster round counts (the machine is shared).
    """
    import json

    from contract import blob as B

    hdr = B.parse(blob)
    size = B.tensors(blob, hdr)[hdr["input"]][1]
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (n_inputs, int(np.prod(size))), dtype=np.int8)
    files = {"/data/model.bin": bytes(blob), "/data/in.bin": x.tobytes()}
    if with_float:
        layers = float_layers(blob) if layers is None else layers
        spec = {"layers": [{"w": w, "b": b, "act": a} for w, b, a in layers]}
        files["/data/float.json"] = json.dumps(spec).encode()
    out, _ = run_script(_BENCH % (round_ms * 1000), files)
    res = json.loads(out.strip().splitlines()[-1])
    per_s = res["per_s"]
    row = {"model": hdr["name"], "blob_bytes": len(blob), "ram_bytes": res["ram_bytes"],
           "int8_inf_per_s": round(per_s["int8"], 1)}
    if with_float:
        row.update(float_inf_per_s=round(per_s["float"], 1), ratio=round(per_s["int8"] / per_s["float"], 2),
                   float_loop_inf_per_s=round(per_s["float_loop"], 1),
                   ratio_vs_float_loop=round(per_s["int8"] / per_s["float_loop"], 2))
    return row


def bench_micropython(model_name: str, models: Path = Path("models"), version: int | None = None) -> dict:
    """The MicroPython row of `tinyfleet bench runtime` for a trained model (models/<name>/<v>/int8.tflite)
    or, failing that, a training.testmodels name: blob and RAM size, int8 inferences/s in the
    MicroPython wasm build, the float-list baseline when the net is dense, and whether 20 random
    inputs give TFLM's bytes."""
    from training import tflm
    from training.tflite_to_blob import convert

    try:
        from training.export import find_version
        folder = find_version(model_name, models, version)
        tflite, ver = (folder / "int8.tflite").read_bytes(), int(folder.name)
    except FileNotFoundError:
        from training import testmodels
        if model_name not in testmodels.names():
            raise
        tflite, ver = testmodels.get(model_name), 1
    blob = convert(tflite, model_name[:31], ver)
    try:
        float_layers(blob)
        dense = True
    except ValueError:
        dense = False
    row = bench(blob, with_float=dense)
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (20, tflm.input_size(tflite)), dtype=np.int8)
    want = tflm.run_batch(tflite, x).reshape(len(x), -1)
    row["matches_tflm"] = bool((run_batch(blob, x) == want).all())
    return row
