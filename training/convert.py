"""Keras -> .tflite: float, full-int8 (per-channel and per-tensor), and int8 I/O helpers."""
from __future__ import annotations

import numpy as np


def to_tflite(model, rep_x: np.ndarray | None = None, per_channel: bool = True) -> bytes:
    """Float .tflite when `rep_x` is None, else full int8 (int8 in/out) calibrated on `rep_x`.

    `from_keras_model` only: `from_concrete_functions` silently drops the weights."""
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if rep_x is not None:
        rep = np.asarray(rep_x, dtype=np.float32)

        def representative():
            for i in range(len(rep)):
                yield [rep[i:i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        if not per_channel:
            conv._experimental_disable_per_channel = True
    import contextlib
    import io
    import warnings
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes(conv.convert())


def io_details(tflite: bytes) -> dict:
    """Input/output shape, scale and zero point, and the op list, read with LiteRT."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=tflite)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    ops = [op["op_name"] for op in it._get_ops_details()]
    return {"input_shape": [int(v) for v in i["shape"]], "output_shape": [int(v) for v in o["shape"]],
            "input_scale": float(i["quantization"][0]), "input_zero_point": int(i["quantization"][1]),
            "output_scale": float(o["quantization"][0]), "output_zero_point": int(o["quantization"][1]),
            "ops": ops}


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, dtype=np.float32) - zero_point) * np.float32(scale)


def int8_predict(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Float in, float out, through the int8 model on TFLM (the reference runtime)."""
    from training import tflm
    d = io_details(tflite)
    q = quantize(x, d["input_scale"], d["input_zero_point"]).reshape([len(x)] + d["input_shape"][1:])
    out = np.asarray(tflm.run_batch(tflite, q))
    return dequantize(out.reshape([len(x)] + d["output_shape"][1:]), d["output_scale"], d["output_zero_point"])


def float_predict(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """The float .tflite on LiteRT, one sample at a time (batch-1 graph)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=tflite)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for row in np.asarray(x, dtype=np.float32):
        it.set_tensor(i, row[None])
        it.invoke()
        out.append(it.get_tensor(o)[0].copy())
    return np.stack(out)
