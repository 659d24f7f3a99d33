"""Every test model: the converter + numpy reference runtime give TFLM's exact output bytes."""
import numpy as np
import pytest

from training import reference_runtime, testmodels, tflm

from blob_fixtures import blob, tflite

N_RANDOM = 300


def _inputs(name: str, size: int) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, name)))
    x = rng.integers(-128, 128, (N_RANDOM, size), dtype=np.int8)
    # Every int8 value at every position at least once (covers each LUT entry).
    ramp = (np.arange(256 * size) % 256 - 128).astype(np.int8).reshape(-1, size)
    edges = np.stack([np.full(size, -128, np.int8), np.full(size, 127, np.int8), np.zeros(size, np.int8)])
    return np.concatenate([x, ramp[: max(1, 256 // size + 1)], edges])


@pytest.mark.parametrize("name", testmodels.names())
def test_reference_runtime_matches_tflm(name):
    model = reference_runtime.Model(blob(name))
    x = _inputs(name, model.input_size)
    want = tflm.run_batch(tflite(name), x)
    got = reference_runtime.run_batch(blob(name), x)
    assert got.shape == want.shape
    mismatching = int((got != want).sum())
    assert mismatching == 0, "%s: %d of %d output bytes differ from TFLM" % (name, mismatching, want.size)
    # A model whose outputs never vary would make this test vacuous.
    assert len(np.unique(want)) > 1


def test_every_op_is_covered():
    from contract import blob as B
    seen = set()
    for name in testmodels.names():
        b = blob(name)
        seen |= {op for op, _, _ in B.ops(b, B.parse(b))}
    assert seen == set(B.OP_NAMES), "ops without a test model: %s" % [B.OP_NAMES[o] for o in set(B.OP_NAMES) - seen]


def test_header_quantization_matches_tflm():
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(tflite("conv_softmax"), arena_size=tflm.find_arena_size(tflite("conv_softmax")))
    model = reference_runtime.Model(blob("conv_softmax"))
    qi = it.get_input_details(0)["quantization_parameters"]
    qo = it.get_output_details(0)["quantization_parameters"]
    assert np.float32(model.input_scale) == qi["scales"][0]
    assert model.input_zero_point == qi["zero_points"][0]
    assert np.float32(model.output_scale) == qo["scales"][0]
    assert model.output_zero_point == qo["zero_points"][0]
    assert model.input_shape == (1, 8, 8, 1) and model.output_shape == (1, 1, 1, 5)


def test_tflm_probe_survives_a_model_tflm_cannot_load():
    with pytest.raises(tflm.TFLMError):
        tflm.find_arena_size(b"\0" * 64 + b"not a model" * 10)
