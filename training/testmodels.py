"""Tiny full-int8 .tflite models, one per op family, for runtime parity tests.

Each model is built from a fixed seed, converted with a representative dataset
(int8 in/out, TFLITE_BUILTINS_INT8) and cached under var/testmodels/, so the
runtimes' tests pay TensorFlow's import and conversion cost once per machine.
Weights are random (seeded): bit-exactness does not need a trained model.
"""
from __future__ import annotations

import functools

import os
from pathlib import Path
from typing import Callable

CACHE = Path(__file__).resolve().parents[1] / "var" / "testmodels"
SEED = 1234
CACHE_VERSION = "1"  # bump when a builder changes


def _dense_sine(keras):
    inp = keras.Input((1,), batch_size=1)
    x = keras.layers.Dense(16, activation="relu")(inp)
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(1)(x))


def _conv_softmax(keras):
    inp = keras.Input((8, 8, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5)(x)
    return keras.Model(inp, keras.layers.Softmax()(x))


def _conv_strided(keras):
    inp = keras.Input((9, 7, 2), batch_size=1)
    x = keras.layers.Conv2D(4, (2, 3), strides=(1, 2), padding="valid")(inp)
    y = keras.layers.AveragePooling2D(3, strides=1, padding="same")(x)
    y = keras.layers.Conv2D(2, 3, dilation_rate=2, padding="same")(y)
    return keras.Model(inp, y)


def _odd_padding(keras):
    # SAME padding with an odd total: TFLM puts the extra row/column at the end.
    inp = keras.Input((7, 7, 2), batch_size=1)
    x = keras.layers.Conv2D(3, 2, padding="same")(inp)
    x = keras.layers.DepthwiseConv2D(4, padding="same", activation="relu")(x)
    x = keras.layers.AveragePooling2D(2, strides=1, padding="same")(x)
    return keras.Model(inp, keras.layers.Conv2D(2, 4, strides=2, padding="same")(x))


def _maxpool_same(keras):
    inp = keras.Input((7, 9, 3), batch_size=1)
    x = keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="relu6")(inp)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    return keras.Model(inp, keras.layers.Flatten()(x))


def _depthwise_avgpool(keras):
    inp = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(inp)
    x = keras.layers.Conv2D(8, 1, activation="relu")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(3)(x))


def _global_avg(keras):
    inp = keras.Input((6, 6, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="valid")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(2)(x))


def _sigmoid_tanh(keras):
    inp = keras.Input((8,), batch_size=1)
    x = keras.layers.Dense(8, activation="tanh")(inp)
    return keras.Model(inp, keras.layers.Dense(4, activation="sigmoid")(x))


def _add_branches(keras):
    inp = keras.Input((8,), batch_size=1)
    a = keras.layers.Dense(8)(inp)
    b = keras.layers.Dense(8, activation="relu")(inp)
    x = keras.layers.Add()([a, b])
    return keras.Model(inp, keras.layers.Dense(3)(x))


def _add_broadcast(keras):
    inp = keras.Input((4, 4, 3), batch_size=1)
    a = keras.layers.Conv2D(3, 1)(inp)
    g = keras.layers.GlobalAveragePooling2D(keepdims=True)(inp)
    b = keras.layers.Conv2D(3, 1, activation="relu")(g)
    return keras.Model(inp, keras.layers.Add()([a, b]))


def _autoencoder(keras):
    inp = keras.Input((32,), batch_size=1)
    x = keras.layers.Dense(16, activation="relu")(inp)
    x = keras.layers.Dense(8, activation="relu")(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(32)(x))


def _dense_3d(keras):
    # FULLY_CONNECTED over the last axis of a 3-D input: 4 batches of 8.
    inp = keras.Input((4, 8), batch_size=1)
    return keras.Model(inp, keras.layers.Dense(5, activation="relu")(inp))


def _mean_channels(keras):
    inp = keras.Input((3, 5, 6), batch_size=1)
    x = keras.layers.Conv2D(4, 1)(inp)
    return keras.Model(inp, keras.ops.mean(x, axis=-1, keepdims=True))


def _add_const(keras):
    import numpy as np
    inp = keras.Input((4, 4, 3), batch_size=1)
    x = keras.ops.add(inp, np.array([[[[0.5, -0.25, 0.125]]]], dtype="float32"))
    return keras.Model(inp, keras.layers.Conv2D(2, 1)(x))


def _tanh_direct(keras):
    inp = keras.Input((16,), batch_size=1)
    return keras.Model(inp, keras.layers.Activation("tanh")(inp))


def _sigmoid_direct(keras):
    inp = keras.Input((16,), batch_size=1)
    return keras.Model(inp, keras.layers.Activation("sigmoid")(inp))


def _softmax_direct(keras):
    inp = keras.Input((2, 16), batch_size=1)
    return keras.Model(inp, keras.layers.Softmax()(inp))


def _too_big_dense(keras):
    inp = keras.Input((300,), batch_size=1)
    return keras.Model(inp, keras.layers.Dense(256)(inp))


def _unsupported_square(keras):
    inp = keras.Input((4,), batch_size=1)
    x = keras.layers.Dense(4)(inp)
    x = keras.layers.Multiply()([x, x])
    return keras.Model(inp, keras.layers.Dense(2)(x))


# name -> (builder, input range for calibration, per_channel)
MODELS: dict[str, tuple[Callable, float, bool]] = {
    "dense_sine": (_dense_sine, 3.2, True),
    "dense_sine_pt": (_dense_sine, 3.2, False),
    "conv_softmax": (_conv_softmax, 1.0, True),
    "conv_strided": (_conv_strided, 1.0, True),
    "conv_strided_pt": (_conv_strided, 1.0, False),
    "maxpool_same": (_maxpool_same, 1.0, True),
    "odd_padding": (_odd_padding, 1.0, True),
    "depthwise_avgpool": (_depthwise_avgpool, 1.0, True),
    "global_avg": (_global_avg, 1.0, True),
    "sigmoid_tanh": (_sigmoid_tanh, 2.0, True),
    "add_branches": (_add_branches, 1.0, True),
    "add_broadcast": (_add_broadcast, 1.0, True),
    "autoencoder": (_autoencoder, 1.0, True),
    "dense_3d": (_dense_3d, 1.0, True),
    "mean_channels": (_mean_channels, 1.0, True),
    "add_const": (_add_const, 1.0, True),
    "tanh_direct": (_tanh_direct, 3.0, True),
    "sigmoid_direct": (_sigmoid_direct, 6.0, True),
    "softmax_direct": (_softmax_direct, 4.0, True),
}

# Models the TFLite converter will not emit from Keras, made by editing a
# converted flatbuffer: name -> (base model, edit function name).
EDITED: dict[str, tuple[str, str]] = {
    "requantize": ("dense_sine_pt", "_append_requantize"),
    "mean_same_scale": ("global_avg", "_mean_same_scale"),
    "softmax_beta": ("softmax_direct", "_softmax_beta"),
}

# int8 inside, float32 at the edges: a QUANTIZE first and a DEQUANTIZE last,
# which the blob converter folds into the header scales. Not in names(): TFLM
# takes float inputs for these.
FLOAT_IO: dict[str, tuple[Callable, float, bool]] = {
    "dense_sine_float_io": (_dense_sine, 3.2, False),
}

# Models the blob cannot express (for the converter's error tests).
UNSUPPORTED: dict[str, tuple[Callable, float, bool]] = {
    "unsupported_mul": (_unsupported_square, 1.0, True),
    "too_big_dense": (_too_big_dense, 1.0, True),  # 76,800 weights: one record holds < 64 KiB
}


def names() -> list[str]:
    """Names of the supported test models."""
    return list(MODELS) + list(EDITED)


def _load(data: bytes):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema, schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def _pack(model) -> bytes:
    import flatbuffers
    b = flatbuffers.Builder(4096)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _append_requantize(data: bytes) -> bytes:
    """Append an int8 -> int8 QUANTIZE (requantize) op after the model output."""
    import copy
    schema, m = _load(data)
    g = m.subgraphs[0]
    src = g.outputs[0]
    t = copy.deepcopy(g.tensors[src])
    t.name = "requantized"
    t.buffer = 0
    t.quantization.scale = [float(g.tensors[src].quantization.scale[0]) * 1.7]
    t.quantization.zeroPoint = [min(int(g.tensors[src].quantization.zeroPoint[0]) + 5, 127)]
    g.tensors.append(t)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    m.operatorCodes.append(code)
    op = schema.OperatorT()
    op.opcodeIndex = len(m.operatorCodes) - 1
    op.inputs = [src]
    op.outputs = [len(g.tensors) - 1]
    g.operators.append(op)
    g.outputs = [len(g.tensors) - 1]
    return _pack(m)


def _softmax_beta(data: bytes) -> bytes:
    """SOFTMAX with beta 0.37 (Keras always writes 1.0)."""
    _, m = _load(data)
    for op in m.subgraphs[0].operators:
        if hasattr(op.builtinOptions, "beta"):
            op.builtinOptions.beta = 0.37
    return _pack(m)


def _mean_same_scale(data: bytes) -> bytes:
    """Give the MEAN output the input's scale and zero point (some TFLM versions switch
    to a truncating integer mean then; this build must still match the blob)."""
    schema, m = _load(data)
    g = m.subgraphs[0]
    for op in g.operators:
        if m.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.MEAN:
            qi = g.tensors[op.inputs[0]].quantization
            qo = g.tensors[op.outputs[0]].quantization
            qo.scale, qo.zeroPoint = list(qi.scale), list(qi.zeroPoint)
    return _pack(m)


def _convert(name: str, builder: Callable, span: float, per_channel: bool, int8_io: bool = True) -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(SEED + sum(map(ord, name)))
    model = builder(keras)
    # Random weights, but scaled up a little so activations are not all tiny.
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([w * 1.5 if w.ndim > 1 else np.random.uniform(-0.3, 0.3, w.shape).astype(w.dtype)
                               for w in ws])
    shape = (1,) + tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(SEED)

    def representative():
        for _ in range(64):
            yield [rng.uniform(-span, span, shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel = True
    return converter.convert()


def get(name: str) -> bytes:
    """The int8 .tflite bytes of test model `name` (built on first use, then cached)."""
    if name in EDITED:
        base, edit = EDITED[name]
        return globals()[edit](get(base))
    spec = MODELS.get(name) or UNSUPPORTED.get(name) or FLOAT_IO.get(name)
    if spec is None:
        raise KeyError("no test model %r (have: %s)"
                       % (name, ", ".join(names() + list(FLOAT_IO) + list(UNSUPPORTED))))
    path = CACHE / ("%s.v%s.tflite" % (name, CACHE_VERSION))
    if path.exists():
        return path.read_bytes()
    data = _convert(name, *spec, name not in FLOAT_IO)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp%d" % os.getpid())
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def build_all() -> None:
    for name in names() + list(FLOAT_IO) + list(UNSUPPORTED):
        get(name)


if __name__ == "__main__":
    build_all()
    for n in names():
        print(n, len(get(n)))


@functools.lru_cache(maxsize=None)
def blob(name: str) -> bytes:
    """The test model as a TinyFleet blob (version 1): what every runtime test loads."""
    from training.tflite_to_blob import convert
    return convert(get(name), name[:31], 1)
