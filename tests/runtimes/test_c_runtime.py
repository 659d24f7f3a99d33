"""The portable C99 runtime (node_firmware/c/tfm_runtime.c), host build:
bit-exact with TFLM on every test model, strict C99, and a clear status for
every malformed blob (never a crash)."""
import re
import struct
import subprocess

import numpy as np
import pytest

from node_firmware import c_host
from training import testmodels

from c_runtime_fixtures import assert_same, blob, fix_crc, golden, inputs

SRC = c_host.SRC


@pytest.mark.parametrize("name", testmodels.names())
def test_host_c_matches_tflm(name):
    assert_same(name, c_host.run_batch(blob(name), inputs(name)), golden(name), "host C runtime")


def test_every_op_is_exercised():
    from contract import blob as B
    seen = set()
    for name in testmodels.names():
        b = blob(name)
        seen |= {op for op, _, _ in B.ops(b, B.parse(b))}
    assert seen == set(B.OP_NAMES), "ops without a test model: %s" % sorted(set(B.OP_NAMES) - seen)


@pytest.mark.parametrize("cc", [["gcc"], ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                          "-mfpu=fpv4-sp-d16"]])
def test_strict_c99_build(cc, tmp_path):
    r = subprocess.run([*cc, *c_host.WARN, "-Os", "-c", str(SRC / "tfm_runtime.c"), "-o", str(tmp_path / "t.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_only_freestanding_headers():
    """No libc beyond <stdint.h>/<string.h>/<stddef.h> (and arm_acle.h for SMLAD)."""
    allowed = {"stdint.h", "string.h", "stddef.h", "arm_acle.h", "tfm_runtime.h", "tfm_kernels.h"}
    for f in ("tfm_runtime.c", "tfm_runtime.h", "tfm_kernels.h"):
        text = re.sub(r"/\*.*?\*/", "", (SRC / f).read_text(), flags=re.S)  # code only
        incs = {line.split()[1].strip('<>"') for line in text.splitlines() if line.startswith("#include")}
        assert incs <= allowed, "%s includes %s" % (f, incs - allowed)
        for banned in ("malloc", "printf", "float ", "double "):
            assert banned not in text, "%s uses %s" % (f, banned)


def test_runtime_fits_4k_on_m4():
    size = c_host.size_of(c_host.runtime_object_m4())
    assert size["data"] == 0 and size["bss"] == 0
    assert size["text"] <= 4096, size


# ---------------------------------------------------------------- error statuses

def _status(b: bytes, arena_len=None) -> str:
    with pytest.raises(c_host.CRuntimeError) as e:
        c_host.run_batch(b, np.zeros((1, max(1, c_host._header_sizes(b)[0])), np.int8), arena_len=arena_len)
    return e.value.status


def _op_offset(b: bytes, opcode: int) -> int:
    from contract import blob as B
    return next(off for code, off, _ in B.ops(b, B.parse(b)) if code == opcode)


def test_bad_magic():
    b = bytearray(blob("dense_sine"))
    b[0:4] = b"TFLB"
    assert _status(bytes(b)) == "TFM_ERR_MAGIC"


def test_version_mismatch():
    b = bytearray(blob("dense_sine"))
    b[4] = 2
    assert _status(fix_crc(b)) == "TFM_ERR_VERSION"


@pytest.mark.parametrize("keep", [0.5, 0.99, 12])
def test_truncated_blob(keep):
    b = blob("conv_softmax")
    n = int(len(b) * keep) if keep < 1 else keep
    assert _status(b[:n]) == "TFM_ERR_TRUNCATED"


def test_record_longer_than_blob_is_truncated():
    from contract import blob as B
    b = bytearray(blob("dense_sine"))
    last = B.ops(bytes(b), B.parse(bytes(b)))[-1][1]
    struct.pack_into("<H", b, last + 2, struct.unpack_from("<H", b, last + 2)[0] + 64)
    assert _status(fix_crc(b)) == "TFM_ERR_TRUNCATED"


def test_crc_mismatch():
    b = bytearray(blob("conv_softmax"))
    b[-1] ^= 0x01
    assert _status(bytes(b)) == "TFM_ERR_CRC"


def test_unknown_opcode_is_named():
    b = bytearray(blob("dense_sine"))
    from contract import blob as B
    b[_op_offset(bytes(b), B.OP_FULLY_CONNECTED)] = 99
    with pytest.raises(c_host.CRuntimeError) as e:
        c_host.run_batch(fix_crc(b), np.zeros((1, 1), np.int8))  # dense_sine: 1 input
    assert e.value.status == "TFM_ERR_OPCODE" and "99" in str(e.value)


def test_tensor_out_of_bounds():
    from contract import blob as B
    b = bytearray(blob("dense_sine"))
    hdr = B.parse(bytes(b))
    # activation tensor 0 pushed past the arena
    struct.pack_into("<H", b, hdr["tensors_off"], hdr["arena_size"] // 4)
    assert _status(fix_crc(b)) == "TFM_ERR_BOUNDS"


def test_record_names_missing_tensor():
    from contract import blob as B
    b = bytearray(blob("dense_sine"))
    off = _op_offset(bytes(b), B.OP_FULLY_CONNECTED)
    struct.pack_into("<H", b, off + 4, 999)
    assert _status(fix_crc(b)) == "TFM_ERR_BOUNDS"


def test_record_too_small_for_its_weights():
    from contract import blob as B
    b = bytearray(blob("dense_sine"))
    off = _op_offset(bytes(b), B.OP_FULLY_CONNECTED)
    struct.pack_into("<H", b, off + 12, 200)  # n_in larger than the weights present
    assert _status(fix_crc(b)) == "TFM_ERR_BOUNDS"


def test_arena_too_small_and_exact():
    from contract import blob as B
    b = blob("conv_softmax")
    need = B.parse(b)["arena_size"]
    assert _status(b, arena_len=need - 1) == "TFM_ERR_ARENA"
    x = inputs("conv_softmax")[:5]
    assert (c_host.run_batch(b, x, arena_len=need) == golden("conv_softmax")[:5]).all()


def test_corrupted_blobs_are_refused_or_run_safely(tmp_path):
    """Random byte edits (crc re-sealed so that validation, not the crc, must
    catch them) are refused or run without any out-of-bounds access: the
    runtime is built with AddressSanitizer + UBSan and aborts on the first one."""
    import os
    import random
    drv = tmp_path / "drv"
    r = subprocess.run(["gcc", "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                        "-I", str(SRC), os.path.join(os.path.dirname(__file__), "c_runtime_asan_driver.c"),
                        str(SRC / "tfm_runtime.c"), "-o", str(drv)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rng = random.Random(5)
    files = []
    for name in testmodels.names():
        base = blob(name)
        for k in range(60):
            b = bytearray(base)
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(16, len(b))] = rng.randrange(256)
            files.append(tmp_path / ("%s-%d.blob" % (name, k)))
            files[-1].write_bytes(fix_crc(b))
    r = subprocess.run([str(drv), *map(str, files)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ran, refused = map(int, r.stdout.split())
    assert ran + refused == len(files) and ran > 0 and refused > 0
