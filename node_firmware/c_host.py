"""CPython side of the C99 runtime: builds it with gcc / arm-none-eabi-gcc into
var/build/c/ (keyed by a hash of sources and flags, so a session builds once),
runs blobs on the host (ctypes), on an emulated Cortex-M4 (qemu mps2-an386 with
semihosting) and as generated C, and measures size and instruction counts.

Instruction counts come from a small QEMU TCG plugin (c/m4/icount_plugin.c)
that counts guest instructions between the entries of mark_begin() and
mark_end() around each inference; an empty begin/end pair measured first is
subtracted. The count is exact and repeatable (no timer resolution involved).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(__file__).resolve().parent / "c"
M4 = SRC / "m4"
BUILD = Path(os.environ.get("TINYFLEET_C_BUILD", ROOT / "var" / "build" / "c"))

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os",
            "-ffunction-sections", "-fdata-sections"]
M4_LINK = ["-nostartfiles", "--specs=nano.specs", "-T", str(M4 / "m4.ld"), "-Wl,--gc-sections"]
STATUS = ["TFM_OK", "TFM_ERR_ARG", "TFM_ERR_MAGIC", "TFM_ERR_VERSION", "TFM_ERR_TRUNCATED",
          "TFM_ERR_CRC", "TFM_ERR_OPCODE", "TFM_ERR_BOUNDS", "TFM_ERR_ARENA"]
QEMU_TIMEOUT = 600


class CRuntimeError(RuntimeError):
    """The C runtime refused a blob (or the emulated run failed); .status names why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ building

def _key(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.read_bytes() if isinstance(p, Path) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _build(out_name: str, cmd_fn, inputs: list, extra_key=()) -> Path:
    """Build once per hash of sources and command; concurrent builders race harmlessly (rename)."""
    placeholder = Path("OUT")
    out = BUILD / out_name.format(key=_key(*inputs, *extra_key, " ".join(cmd_fn(placeholder))))
    if out.exists():
        return out
    BUILD.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp%d" % os.getpid())
    cmd = cmd_fn(tmp)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("build failed: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    tmp.replace(out)
    return out


RUNTIME_SRC = [SRC / "tfm_runtime.c", SRC / "tfm_runtime.h", SRC / "tfm_kernels.h"]


def host_lib() -> Path:
    """The runtime plus the host batch shim as a shared library (gcc -O2, -Werror -pedantic)."""
    srcs = RUNTIME_SRC + [SRC / "host" / "tfm_host.c"]
    return _build("libtfm-{key}.so", lambda o: ["gcc", *WARN, "-O2", "-fPIC", "-shared", "-I", str(SRC),
                                                 str(SRC / "tfm_runtime.c"), str(SRC / "host" / "tfm_host.c"),
                                                 "-o", str(o)], srcs)


def runtime_object_m4() -> Path:
    """tfm_runtime.c alone at -Os for the M4: the size the brief asks about."""
    return _build("tfm_runtime-m4-{key}.o", lambda o: ["arm-none-eabi-gcc", *WARN, *M4_FLAGS, "-c",
                                                        str(SRC / "tfm_runtime.c"), "-o", str(o)], RUNTIME_SRC)


def harness_elf() -> Path:
    """Blob-runtime harness for the emulated M4 (reads model.blob at run time)."""
    srcs = RUNTIME_SRC + [M4 / "harness.c", M4 / "startup.c", M4 / "semihost.h", M4 / "m4.ld"]
    return _build("harness-{key}.elf", lambda o: ["arm-none-eabi-gcc", *WARN, *M4_FLAGS, "-I", str(SRC),
                                                   "-I", str(M4), str(M4 / "startup.c"), str(M4 / "harness.c"),
                                                   str(SRC / "tfm_runtime.c"), *M4_LINK, "-o", str(o)], srcs)


def flash_harness_elf(blob: bytes) -> Path:
    """Blob-runtime harness with the blob linked in as const data (flash at 0x0)."""
    words = np.frombuffer(bytes(blob) + bytes(-len(blob) % 4), dtype="<u4")
    src = BUILD / ("blob-%s.c" % hashlib.sha256(bytes(blob)).hexdigest()[:16])
    if not src.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        body = ",\n".join(", ".join("0x%08xu" % w for w in words[i:i + 8]) for i in range(0, len(words), 8))
        tmp = src.with_name(src.name + ".tmp%d" % os.getpid())
        tmp.write_text("#include <stdint.h>\nconst uint32_t tfm_blob_len = %du;\n"
                       "const uint32_t tfm_blob_words[%d] = {\n%s\n};\n" % (len(blob), max(1, len(words)), body or "0"))
        tmp.replace(src)
    srcs = RUNTIME_SRC + [src, M4 / "harness.c", M4 / "startup.c", M4 / "semihost.h", M4 / "m4.ld"]
    return _build("harness-flash-{key}.elf", lambda o: ["arm-none-eabi-gcc", *WARN, *M4_FLAGS, "-DBLOB_IN_FLASH",
                                                         "-I", str(SRC), "-I", str(M4), str(M4 / "startup.c"),
                                                         str(M4 / "harness.c"), str(SRC / "tfm_runtime.c"), str(src),
                                                         *M4_LINK, "-o", str(o)], srcs)


def plugin() -> Path:
    return _build("icount-{key}.so", lambda o: ["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra",
                                                 str(M4 / "icount_plugin.c"), "-o", str(o)],
                  [M4 / "icount_plugin.c"])


def _generated_source(blob: bytes, speed: bool = False) -> Path:
    from node_firmware.c import codegen
    code = codegen.generate(blob, speed)
    path = BUILD / ("gen-%s.c" % hashlib.sha256(code.encode()).hexdigest()[:16])
    if not path.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp%d" % os.getpid())
        tmp.write_text(code)
        tmp.replace(path)
    return path


def codegen_lib(blob: bytes, speed: bool = False) -> Path:
    gen = _generated_source(blob, speed)
    return _build("libgen-{key}.so", lambda o: ["gcc", *WARN, "-O2", "-fPIC", "-shared", "-I", str(SRC),
                                                 str(gen), "-o", str(o)], [gen, SRC / "tfm_kernels.h"])


def codegen_object_m4(blob: bytes, speed: bool = False) -> Path:
    gen = _generated_source(blob, speed)
    return _build("gen-m4-{key}.o", lambda o: ["arm-none-eabi-gcc", *WARN, *M4_FLAGS, "-I", str(SRC), "-c",
                                                str(gen), "-o", str(o)], [gen, SRC / "tfm_kernels.h"])


def codegen_elf(blob: bytes, speed: bool = False) -> Path:
    gen = _generated_source(blob, speed)
    n_in, n_out = _io_sizes(blob)
    srcs = [gen, SRC / "tfm_kernels.h", M4 / "harness.c", M4 / "startup.c", M4 / "semihost.h", M4 / "m4.ld"]
    return _build("gen-{key}.elf", lambda o: ["arm-none-eabi-gcc", *WARN, *M4_FLAGS, "-DCODEGEN",
                                               "-DIN_SIZE=%d" % n_in, "-DOUT_SIZE=%d" % n_out, "-I", str(SRC),
                                               "-I", str(M4), str(M4 / "startup.c"), str(M4 / "harness.c"),
                                               str(gen), *M4_LINK, "-o", str(o)], srcs, (n_in, n_out))


# ------------------------------------------------------------------ running

def _io_sizes(blob: bytes) -> tuple[int, int]:
    from contract import blob as B
    hdr = B.parse(blob)
    ts = B.tensors(blob, hdr)
    return (int(np.prod(ts[hdr["input"]][1])), int(np.prod(ts[hdr["output"]][1])))


def _as_batch(inputs: np.ndarray, n_in: int) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(inputs, dtype=np.int8))
    if n_in <= 0 or x.size % n_in:
        raise ValueError("inputs of %d bytes are not a whole number of %d-byte inputs" % (x.size, n_in))
    return x.reshape(-1, n_in)


_LIBS: dict[Path, ctypes.CDLL] = {}


def _lib(path: Path) -> ctypes.CDLL:
    if path not in _LIBS:
        _LIBS[path] = ctypes.CDLL(str(path))
    return _LIBS[path]


def _header_sizes(blob: bytes) -> tuple[int, int]:
    """Input/output sizes from the tensor table without validating (the C side validates)."""
    import struct
    try:
        hs, = struct.unpack_from("<H", blob, 6)
        inp, out = struct.unpack_from("<HH", blob, 28)
        dims = [struct.unpack_from("<4H", blob, hs + 12 * t + 2) for t in (inp, out)]
    except struct.error:
        return 1, 1
    # capped just above what a valid blob can hold, so a corrupt header cannot
    # make Python allocate gigabytes before the C side refuses it
    n_in, n_out = (min(int(np.prod(d, dtype=np.uint64)), 0x40001) for d in dims)
    return n_in, n_out


def run_batch(blob: bytes, inputs: np.ndarray, arena_len: int | None = None) -> np.ndarray:
    """Run the C runtime (host build) on each row of `inputs`; returns (n, output_size) int8.

    Raises CRuntimeError with the runtime's status (bad magic, crc, arena, ...)."""
    lib = _lib(host_lib())
    _, n_out = _header_sizes(blob)
    x = np.ascontiguousarray(np.asarray(inputs, dtype=np.int8))
    x = x.reshape(len(x), -1)  # the C side checks the row size against the model
    n_in = x.shape[1]
    y = np.zeros((len(x), n_out), dtype=np.int8)
    err = ctypes.c_int(-1)
    buf = ctypes.create_string_buffer(bytes(blob), len(blob))  # 4-byte aligned copy
    lib.tfm_host_run_batch.restype = ctypes.c_int
    lib.tfm_host_status_str.restype = ctypes.c_char_p
    st = lib.tfm_host_run_batch(buf, ctypes.c_size_t(len(blob)), x.ctypes.data_as(ctypes.c_void_p),
                                ctypes.c_size_t(n_in), y.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(n_out),
                                ctypes.c_size_t(len(x)),
                                ctypes.c_size_t(-1 if arena_len is None else arena_len),  # -1: arena_size
                                ctypes.byref(err))
    if st != 0:
        msg = lib.tfm_host_status_str(st).decode()
        if STATUS[st] == "TFM_ERR_OPCODE":
            msg += " %d" % err.value
        if STATUS[st] == "TFM_ERR_ARG":
            msg += ": input rows of %d bytes, model wants %d in / %d out" % ((n_in,) + _header_sizes(blob))
        raise CRuntimeError(STATUS[st], "C runtime: " + msg)
    return y


def run_batch_codegen(blob: bytes, inputs: np.ndarray, speed: bool = False) -> np.ndarray:
    """Run the model-specific generated C (host build); returns (n, output_size) int8."""
    lib = _lib(codegen_lib(blob, speed))
    n_in, n_out = _io_sizes(blob)
    x = _as_batch(inputs, n_in)
    y = np.zeros((len(x), n_out), dtype=np.int8)
    for i in range(len(x)):
        lib.tfmg_invoke(x[i].ctypes.data_as(ctypes.c_void_p), y[i].ctypes.data_as(ctypes.c_void_p))
    return y


def _nm(elf: Path, sym: str) -> int:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^([0-9a-f]+) T %s$" % sym, out, re.M)
    if not m:
        raise RuntimeError("%s: no symbol %s" % (elf, sym))
    return int(m.group(1), 16)


def _qemu(elf: Path, files: dict[str, bytes], n_out: int, n: int) -> tuple[np.ndarray, list[int]]:
    """Run an M4 harness under qemu; returns outputs and per-inference instruction counts."""
    with tempfile.TemporaryDirectory(prefix="tfm-m4-") as d:
        for name, data in files.items():
            Path(d, name).write_bytes(data)
        cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
               "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
               "-plugin", "%s,begin=0x%x,end=0x%x,out=icount.txt"
               % (plugin(), _nm(elf, "mark_begin"), _nm(elf, "mark_end"))]
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=QEMU_TIMEOUT)
        if r.returncode != 0:
            code = r.returncode
            status = STATUS[code - 10] if 10 <= code < 10 + len(STATUS) else "EXIT_%d" % code
            raise CRuntimeError(status, "M4 harness exited %d (%s) %s" % (code, status, r.stderr.strip()))
        y = np.frombuffer(Path(d, "outputs.bin").read_bytes(), dtype=np.int8).reshape(n, n_out).copy()
        counts = [int(v) for v in Path(d, "icount.txt").read_text().split()]
    if len(counts) != n + 1:
        raise RuntimeError("icount plugin reported %d regions, expected %d" % (len(counts), n + 1))
    return y, [c - counts[0] for c in counts[1:]]


def run_batch_m4(blob: bytes, inputs: np.ndarray, counts: list | None = None, flash: bool = False) -> np.ndarray:
    """Run the blob runtime on the emulated Cortex-M4; appends instruction counts to `counts`.
    flash=False loads the blob into RAM at run time (as after an OTA update), flash=True
    links it into flash. The blob is not checked here: the M4 validates it and its status
    becomes a CRuntimeError."""
    n_in, n_out = _header_sizes(blob)
    x = _as_batch(inputs, n_in)
    if flash:
        y, c = _qemu(flash_harness_elf(blob), {"inputs.bin": x.tobytes()}, n_out, len(x))
    else:
        y, c = _qemu(harness_elf(), {"model.blob": bytes(blob), "inputs.bin": x.tobytes()}, n_out, len(x))
    if counts is not None:
        counts.extend(c)
    return y


def run_batch_codegen_m4(blob: bytes, inputs: np.ndarray, counts: list | None = None,
                         speed: bool = False) -> np.ndarray:
    """Run the generated C on the emulated Cortex-M4."""
    n_in, n_out = _io_sizes(blob)
    x = _as_batch(inputs, n_in)
    y, c = _qemu(codegen_elf(blob, speed), {"inputs.bin": x.tobytes()}, n_out, len(x))
    if counts is not None:
        counts.extend(c)
    return y


# ------------------------------------------------------------------ measuring

def size_of(obj: Path) -> dict:
    """text (code + rodata), data, bss of an object file, from arm-none-eabi-size."""
    out = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def macs(blob: bytes) -> int:
    """Multiply-accumulates of one inference (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D)."""
    from contract import blob as B
    from node_firmware.c.codegen import _macs
    hdr = B.parse(blob)
    ts = B.tensors(blob, hdr)
    return sum(_macs(blob, hdr, ts, code, off) for code, off, _ in B.ops(blob, hdr))


def bench_c(blob: bytes, n_inputs: int = 8, seed: int = 0) -> dict:
    """Sizes at -Os on the M4 (text includes rodata) of the blob runtime and of
    the generated C (size and speed variants), their instructions per inference
    and per MAC on the emulated M4, and whether all three agree."""
    n_in, _ = _io_sizes(blob)
    x = np.random.default_rng(seed).integers(-128, 128, (n_inputs, n_in), dtype=np.int8)
    n_macs = macs(blob)
    out: dict = {"macs": n_macs}
    rt_counts: list[int] = []
    y_rt = run_batch_m4(blob, x, rt_counts)
    runs = [("runtime", rt_counts, size_of(runtime_object_m4()))]
    mismatches = 0
    for speed in (False, True):
        counts: list[int] = []
        y = run_batch_codegen_m4(blob, x, counts, speed)
        mismatches += int(np.count_nonzero(y != y_rt))
        runs.append(("codegen_speed" if speed else "codegen_size", counts, size_of(codegen_object_m4(blob, speed))))
    for name, counts, size in runs:
        ipi = sum(counts) / len(counts)
        out[name] = {**size, "insns_per_inference": ipi, "insns_per_mac": round(ipi / n_macs, 3) if n_macs else None}
    out["m4_mismatches_codegen_vs_runtime"] = mismatches
    return out
