"""The C runtime and the generated C on an emulated Cortex-M4 (qemu
mps2-an386, the project's own startup and linker script, semihosting I/O):
same bytes as the host build, repeatable instruction counts, error statuses."""
import numpy as np
import pytest

from node_firmware import c_host
from training import testmodels

from c_runtime_fixtures import blob, fix_crc, golden, inputs

N_M4 = 40  # fewer inputs under qemu


@pytest.mark.parametrize("name", testmodels.names())
def test_m4_matches_host_and_tflm(name):
    x = inputs(name)[-N_M4:]  # includes the edge rows
    host = c_host.run_batch(blob(name), x)
    m4 = c_host.run_batch_m4(blob(name), x)
    gen = c_host.run_batch_codegen_m4(blob(name), x, speed=True)
    assert int((m4 != host).sum()) == 0, "%s: M4 runtime differs from host" % name
    assert int((gen != host).sum()) == 0, "%s: M4 generated C differs from host" % name
    assert (host == golden(name)[-N_M4:]).all()


def test_instruction_counts_are_exact_and_repeatable():
    b = blob("dense_sine")
    x = inputs("dense_sine")[:6]
    a, c = [], []
    c_host.run_batch_m4(b, x, a)
    c_host.run_batch_m4(b, x, c)
    assert a == c and len(a) == 6
    assert min(a) > 1000  # a 288-MAC model cannot take fewer instructions
    g = []
    c_host.run_batch_codegen_m4(b, x, g, speed=True)
    assert max(g) < min(a)  # the generated C is the fast path


def test_m4_reports_blob_errors():
    b = bytearray(blob("dense_sine"))
    b[-1] ^= 1
    with pytest.raises(c_host.CRuntimeError) as e:
        c_host.run_batch_m4(bytes(b), np.zeros((1, 1), np.int8))
    assert e.value.status == "TFM_ERR_CRC"
    b = bytearray(blob("dense_sine"))
    b[4] = 9
    with pytest.raises(c_host.CRuntimeError) as e:
        c_host.run_batch_m4(fix_crc(b), np.zeros((1, 1), np.int8))
    assert e.value.status == "TFM_ERR_VERSION"


def test_bench_c_reports_sizes_and_counts():
    r = c_host.bench_c(blob("dense_sine"), n_inputs=3)
    assert r["macs"] == 16 + 256 + 16
    assert r["m4_mismatches_codegen_vs_runtime"] == 0
    for k in ("runtime", "codegen_size", "codegen_speed"):
        assert r[k]["text"] > 0 and r[k]["insns_per_inference"] > 0
    assert r["runtime"]["text"] <= 4096


@pytest.mark.parametrize("name", ["conv_softmax", "add_broadcast"])
def test_m4_runs_the_same_blob_from_flash(name):
    """The blob linked in as const data (flash at 0x0) gives the bytes of the RAM copy."""
    x = inputs(name)[:10]
    ram = c_host.run_batch_m4(blob(name), x)
    flash = c_host.run_batch_m4(blob(name), x, flash=True)
    assert (flash == ram).all() and (ram == golden(name)[:10]).all()
