"""Model-specific generated C (node_firmware/c/codegen.py): bit-exact with TFLM
in both build variants, strict C99, and small enough for the sine model."""
import subprocess

import pytest

from node_firmware import c_host
from node_firmware.c import codegen
from training import testmodels

from c_runtime_fixtures import assert_same, blob, golden, inputs


@pytest.mark.parametrize("speed", [False, True], ids=["size", "speed"])
@pytest.mark.parametrize("name", testmodels.names())
def test_generated_c_matches_tflm(name, speed):
    assert_same(name, c_host.run_batch_codegen(blob(name), inputs(name), speed=speed), golden(name),
                "generated C (%s)" % ("speed" if speed else "size"))


def test_generated_c_is_strict_c99_for_the_m4(tmp_path):
    src = tmp_path / "m.c"
    src.write_text(codegen.generate(blob("depthwise_avgpool"), speed=True))
    r = subprocess.run(["arm-none-eabi-gcc", *c_host.WARN, *c_host.M4_FLAGS, "-I", str(c_host.SRC), "-c", str(src),
                        "-o", str(tmp_path / "m.o")], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_generated_c_embeds_the_weights():
    code = codegen.generate(blob("dense_sine"))
    assert "static const int8_t w1[256]" in code  # the 16x16 layer, as a const array
    assert "tfmg_invoke" in code and "tfm_k_fc(" in code


@pytest.mark.parametrize("name", ["dense_sine", "dense_sine_pt"])
def test_sine_fits_1k(name):
    for speed in (False, True):
        size = c_host.size_of(c_host.codegen_object_m4(blob(name), speed))
        assert size["text"] + size["data"] <= 1024, (name, speed, size)


def test_codegen_refuses_a_corrupt_blob():
    from contract.blob import BlobError
    b = bytearray(blob("dense_sine"))
    b[-1] ^= 1
    with pytest.raises(BlobError):
        codegen.generate(bytes(b))


_REQUANT_CHECK = r"""
#include <stdio.h>
#include "tfm_kernels.h"
int main(void)
{
    uint32_t r = 12345u, i, bad = 0;
    for (i = 0; i < 2000000u; i++) {
        int32_t acc, m;
        int s;
        r = r * 1664525u + 1013904223u;
        acc = (int32_t)(r >> 1) - (1 << 30); /* |acc| < 2^30: mode 2's precondition */
        if (i % 7 == 0) acc = (int32_t)(r % 2001u) - 1000;
        r = r * 1664525u + 1013904223u;
        m = (int32_t)(0x40000000u + (r >> 2));
        s = -1 - (int)(r % 31u);
        if (i % 5 == 0) m = 0;
        if (tfm_requant(acc, m, s, 2) != tfm_mbqm(acc, m, s) || tfm_requant(acc, m, s, 1) != tfm_mbqm(acc, m, s))
            bad++;
    }
    printf("%u\n", (unsigned)bad);
    return 0;
}
"""


def test_fast_requant_equals_tflm_math(tmp_path):
    """tfm_requant's shortcuts (modes 1 and 2) against the full MultiplyByQuantizedMultiplier."""
    src = tmp_path / "rq.c"
    src.write_text(_REQUANT_CHECK)
    r = subprocess.run(["gcc", *c_host.WARN, "-O2", "-I", str(c_host.SRC), str(src), "-o", str(tmp_path / "rq")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(tmp_path / "rq")], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0"]


def test_codegen_command_line(tmp_path):
    import sys
    (tmp_path / "m.blob").write_bytes(blob("conv_softmax"))
    r = subprocess.run([sys.executable, "-m", "node_firmware.c.codegen", "--speed", str(tmp_path / "m.blob"),
                        str(tmp_path / "m.c")], capture_output=True, text=True, cwd=str(c_host.ROOT))
    assert r.returncode == 0, r.stderr
    assert "#define TFM_SPEED 1" in (tmp_path / "m.c").read_text()
    r = subprocess.run(["gcc", *c_host.WARN, "-I", str(c_host.SRC), "-c", str(tmp_path / "m.c"), "-o",
                        str(tmp_path / "m.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", testmodels.names())
def test_fast_kernels_match_tflm_on_every_layer(name, monkeypatch):
    """The speed variant's packed-weight kernels serve only layers of >= HOT_MACS MACs, which
    only the keyword model has: with the threshold at 1 every layer that fits them takes them,
    on the host (plain C) and on the emulated M4 (DSP instructions)."""
    monkeypatch.setattr(codegen, "HOT_MACS", 1)
    assert "g_requant" in codegen.generate(blob("dense_sine"), speed=True)  # the fast path is really on
    assert_same(name, c_host.run_batch_codegen(blob(name), inputs(name), speed=True), golden(name),
                "fast kernels (host)")
    x = inputs(name)[-20:]
    m4 = c_host.run_batch_codegen_m4(blob(name), x, speed=True)
    assert int((m4 != golden(name)[-20:]).sum()) == 0, "%s: fast kernels on the M4 differ from TFLM" % name
