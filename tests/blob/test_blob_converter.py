"""training/tflite_to_blob.py: sizes, arena plans, and clear errors for what it cannot convert."""
from pathlib import Path

import numpy as np
import pytest

from contract import blob as B
from training import testmodels
from training.tflite_to_blob import ConversionError, convert, describe, info

from blob_fixtures import blob, tflite


def test_sine_per_tensor_fits_600_bytes():
    b = convert(tflite("dense_sine_pt"), "sine", 1)
    assert len(b) <= 600, "per-tensor sine blob is %d B" % len(b)
    assert len(b) == 588  # header 48 + 4 tensors 48 + FC records 104 + 344 + 44


def test_per_channel_sine_is_bigger_but_small():
    assert 600 < len(blob("dense_sine")) < 800


def test_conversion_is_deterministic():
    assert convert(tflite("depthwise_avgpool"), "x", 3) == convert(tflite("depthwise_avgpool"), "x", 3)


def test_header_carries_name_and_version():
    hdr = B.parse(convert(tflite("dense_sine"), "sine-v2", 42))
    assert (hdr["name"], hdr["model_version"]) == ("sine-v2", 42)


def test_unsupported_op_is_named():
    with pytest.raises(ConversionError, match=r"unsupported op MUL \(opcode 18\) at operator 1"):
        convert(testmodels.get("unsupported_mul"), "mul", 1)


def test_float_model_is_rejected():
    import tflite_micro
    sine_float = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    with pytest.raises(ConversionError, match="not int8"):
        convert(sine_float.read_bytes(), "f", 1)


@pytest.mark.parametrize("data", [b"", b"garbage" * 20, b"\0" * 64])
def test_garbage_is_rejected(data):
    with pytest.raises(ConversionError):
        convert(data, "x", 1)


def test_bad_name_is_rejected():
    with pytest.raises(ConversionError, match="name"):
        convert(tflite("dense_sine"), "", 1)
    with pytest.raises(ConversionError, match="name"):
        convert(tflite("dense_sine"), "x" * 32, 1)


@pytest.mark.parametrize("name", testmodels.names())
def test_arena_plan_never_overlaps_live_tensors(name):
    """Simulate lifetimes: no op writes over a tensor that is still needed."""
    b = blob(name)
    hdr = B.parse(b)
    ts = B.tensors(b, hdr)
    ops = B.ops(b, hdr)
    io = []
    for op, off, _ in ops:
        t = B.op_tensors(b, op, off)
        io.append((list(t[:-1]), t[-1], op))
    last_use = {hdr["output"]: len(ops)}
    for k, (ins, _, _) in enumerate(io):
        for t in ins:
            last_use[t] = max(last_use.get(t, k), k)

    def span(t):
        off, dims, _, const = ts[t]
        return off, off + int(np.prod(dims))
    live = {hdr["input"]}
    for k, (ins, out, op) in enumerate(io):
        o0, o1 = span(out)
        assert o1 <= hdr["arena_size"] and o0 % 4 == 0
        for t in live:
            if ts[t][3] or last_use.get(t, -1) < k or t == out:
                continue
            if op == B.OP_RESHAPE and t in ins and span(t) == (o0, o1):
                continue  # RESHAPE aliases its input
            a0, a1 = span(t)
            assert o1 <= a0 or a1 <= o0, "op %d output overlaps live tensor %d" % (k, t)
        live.add(out)


def test_reshape_aliases_its_input():
    b = blob("conv_softmax")
    hdr = B.parse(b)
    ts = B.tensors(b, hdr)
    (op, off, _), = [o for o in B.ops(b, hdr) if o[0] == B.OP_RESHAPE]
    inp, out = B.reshape_fields(b, off)
    assert ts[inp][0] == ts[out][0]


def test_arena_is_smaller_than_the_sum_of_activations():
    b = blob("autoencoder")
    hdr = B.parse(b)
    total = sum(int(np.prod(d)) for _, d, _, c in B.tensors(b, hdr) if not c)
    assert hdr["arena_size"] < total


def test_describe_lists_the_ops():
    text = describe(blob("conv_softmax"))
    for op in ("CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"):
        assert op in text
    i = info(blob("conv_softmax"))
    assert i.blob_size == len(blob("conv_softmax")) and i.input_shape == (1, 8, 8, 1)


def test_mean_record_is_the_spec_layout():
    """MEAN kept its 20-byte version-1 record (TFLM's int8 mean is integer-only)."""
    b = blob("global_avg")
    (_, off, size), = [o for o in B.ops(b, B.parse(b)) if o[0] == B.OP_MEAN]
    assert size == 20
    inp, out, mask, mult, shift = B.mean_fields(b, off)
    assert mask == 0b0110 and mult > 0


def test_float_quantize_and_dequantize_are_folded_into_the_header():
    """float in/out model: the blob is the int8 core; quantizing with the header's input
    scale and dequantizing with its output scale gives TFLM's float outputs exactly."""
    from training import reference_runtime, tflm
    t = testmodels.get("dense_sine_float_io")
    b = convert(t, "fio", 1)
    hdr = B.parse(b)
    assert [B.OP_NAMES[op] for op, _, _ in B.ops(b, hdr)] == ["FULLY_CONNECTED"] * 3
    model = reference_runtime.Model(b)
    it = tflm.interpreter(t)
    q = np.arange(-128, 128)
    x = ((q - model.input_zero_point) * np.float32(model.input_scale)).astype(np.float32)
    mismatches = 0
    for qi, xi in zip(q, x):
        it.set_input(np.array([[xi]], np.float32), 0)
        it.invoke()
        want = it.get_output(0).reshape(-1)[0]
        y = int(model.invoke(np.array([qi], np.int8))[0])
        mismatches += np.float32(np.float32(y - model.output_zero_point) * np.float32(model.output_scale)) != want
    assert mismatches == 0


def test_record_over_64k_is_a_clear_error():
    with pytest.raises(ConversionError, match=r"FULLY_CONNECTED at operator 0: .*record is \d+ bytes; the format allows 65535"):
        convert(testmodels.get("too_big_dense"), "big", 1)
