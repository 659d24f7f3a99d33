"""Convert a full-int8 .tflite into a TinyFleet model blob (docs/model-blob.md).

Every multiplier, shift, padding, clamp and lookup table is computed here the
way TFLM's kernel Prepare functions compute them, so the three runtimes only
do integer arithmetic and still match TFLM byte for byte.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from contract import blob as B
from training import quant_math as qm

# TFLite enums used here (schema.fbs).
_INT8, _FLOAT32, _INT32 = 9, 0, 2
_PAD_SAME, _PAD_VALID = 0, 1
_OP_DEQUANTIZE = 6


class ConversionError(ValueError):
    """The .tflite cannot be expressed as a blob; the message says why."""


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema


def _op_names() -> dict[int, str]:
    s = _schema().BuiltinOperator
    return {v: k for k, v in vars(s).items() if not k.startswith("_") and isinstance(v, int)}


def _a4(n: int) -> int:
    return (n + 3) & ~3


def _pad4(b: bytes) -> bytes:
    return b + bytes(_a4(len(b)) - len(b))


# ---------------------------------------------------------------- model access

class _Graph:
    """Thin accessors over the flatbuffer object model."""

    def __init__(self, data: bytes):
        schema = _schema()
        try:
            self.model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        except Exception as e:  # flatbuffers raises assorted errors on garbage
            raise ConversionError("not a .tflite flatbuffer (%s)" % e) from None
        if not self.model.subgraphs or len(self.model.subgraphs) != 1:
            raise ConversionError("expected exactly one subgraph")
        self.data = data
        self.g = self.model.subgraphs[0]

    def opcode(self, op) -> int:
        oc = self.model.operatorCodes[op.opcodeIndex]
        return max(oc.builtinCode, oc.deprecatedBuiltinCode)

    def tensor(self, i: int):
        return self.g.tensors[i]

    def buffer(self, i: int) -> bytes | None:
        t = self.g.tensors[i]
        b = self.model.buffers[t.buffer] if t.buffer < len(self.model.buffers) else None
        if b is None:
            return None
        if b.data is not None and len(b.data):
            return np.asarray(b.data, dtype=np.uint8).tobytes()
        if b.offset and b.size:
            return self.data[b.offset:b.offset + b.size]
        return None

    def is_const(self, i: int) -> bool:
        return self.buffer(i) is not None

    def shape(self, i: int) -> tuple[int, ...]:
        s = self.tensor(i).shape
        return tuple(int(x) for x in (s if s is not None else ()))

    def scales(self, i: int) -> list[float]:
        q = self.tensor(i).quantization
        return [float(x) for x in q.scale] if q is not None and q.scale is not None else []

    def scale(self, i: int) -> float:
        s = self.scales(i)
        if len(s) != 1:
            raise ConversionError("tensor %d (%s) needs one quantization scale, has %d"
                                  % (i, self.name(i), len(s)))
        return s[0]

    def zero_point(self, i: int) -> int:
        q = self.tensor(i).quantization
        zp = q.zeroPoint if q is not None and q.zeroPoint is not None else [0]
        return int(zp[0])

    def name(self, i: int) -> str:
        n = self.tensor(i).name
        return n.decode() if isinstance(n, bytes) else str(n)

    def const_array(self, i: int, dtype) -> np.ndarray:
        raw = self.buffer(i)
        if raw is None:
            raise ConversionError("tensor %d (%s) should be constant" % (i, self.name(i)))
        return np.frombuffer(raw, dtype=dtype).reshape(self.shape(i))


def _dims4(shape: tuple[int, ...], what: str) -> tuple[int, int, int, int]:
    if len(shape) > 4:
        raise ConversionError("%s has rank %d; the blob holds at most 4-D tensors" % (what, len(shape)))
    d = (1,) * (4 - len(shape)) + tuple(shape)
    if any(x <= 0 or x > 0xFFFF for x in d):
        raise ConversionError("%s has unsupported dims %s" % (what, shape))
    return d  # type: ignore[return-value]


# ---------------------------------------------------------------- TFLM Prepare math

def _compute_padding(stride: int, dilation: int, in_size: int, filt: int, padding: int) -> tuple[int, int]:
    """ComputeOutSize + ComputePaddingWithOffset -> (out_size, pad_before)."""
    eff = (filt - 1) * dilation + 1
    if padding == _PAD_SAME:
        out = (in_size + stride - 1) // stride
    elif padding == _PAD_VALID:
        out = (in_size + stride - eff) // stride
    else:
        raise ConversionError("unknown padding %d" % padding)
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2


def _per_channel_multipliers(in_scale: float, filter_scales: list[float], out_scale: float, n: int):
    """PopulateConvolutionQuantizationParams / per-channel FC: double math."""
    res = []
    for i in range(n):
        fs = filter_scales[i] if len(filter_scales) > 1 else filter_scales[0]
        eff = float(np.float32(in_scale)) * float(np.float32(fs)) / float(np.float32(out_scale))
        res.append(qm.quantize_multiplier(eff))
    return res


def _softmax_exp_lut(beta: float, in_scale: float) -> list[int]:
    """PreprocessSoftmaxScaling + exp_on_negative_values for differences 0..-255."""
    real = min(float(beta) * float(np.float32(in_scale)) * float(1 << 26), float((1 << 31) - 1))
    mult, left = qm.quantize_multiplier_greater_than_one(real)
    diff_min = -qm.calculate_input_radius(5, left)
    lut = []
    for d in range(256):
        diff = -d
        if diff >= diff_min:
            lut.append(qm.exp_on_negative_values(qm.mbqm_greater_than_one(diff, mult, left), 5))
        else:
            lut.append(0)
    return lut


def _logistic_tanh_lut(in_scale: float, in_zp: int, tanh: bool) -> list[int]:
    """TFLM's int8 Logistic/Tanh Prepare + reference kernel, for all 256 inputs."""
    real = float(np.float32(in_scale)) * float(1 << 27)
    import math
    q, left = math.frexp(real)
    mult = qm.tflite_round(q * (1 << 31))
    radius = qm.calculate_input_radius(4, left, 31)
    lut = []
    for x in range(-128, 128):
        v = x - in_zp
        if v <= -radius:
            y = -128
        elif v >= radius:
            y = 127
        else:
            q4 = qm.mbqm(v, mult, left)
            if tanh:
                y = qm.rdbpot(qm.gemmlowp_tanh(q4, 4), 24)
                y = min(max(y, -128), 127)
            else:
                y = qm.rdbpot(qm.gemmlowp_logistic(q4, 4), 23)
                y = min(max(y - 128, -128), 127)
        lut.append(y)
    return lut


# ---------------------------------------------------------------- records

def _record(opcode: int, body: bytes) -> bytes:
    body = _pad4(body)
    size = 4 + len(body)
    if size > 0xFFFF:
        raise ConversionError("op %s record is %d bytes; the format allows 65535"
                              % (B.OP_NAMES.get(opcode, opcode), size))
    return struct.pack("<BBH", opcode, 0, size) + body


def _mults_arrays(mults: list[tuple[int, int]], bias: np.ndarray, weights: np.ndarray) -> bytes:
    m = struct.pack("<%di" % len(mults), *[x[0] for x in mults])
    s = _pad4(struct.pack("<%db" % len(mults), *[x[1] for x in mults]))
    return m + s + bias.astype("<i4").tobytes() + _pad4(weights.astype(np.int8).tobytes())


class _Converter:
    def __init__(self, data: bytes):
        self.m = _Graph(data)
        self.names = _op_names()
        self.tmap: dict[int, int] = {}  # tflite tensor -> blob tensor
        self.tensors: list[dict] = []  # blob tensors
        self.records: list[bytes] = []
        self.rec_tensors: list[tuple[list[int], int]] = []  # (blob inputs, blob output) per record
        self.aliases: list[tuple[int, int]] = []

    # -- tensors
    def act(self, i: int) -> int:
        """Blob index of an activation tensor (int8, non-constant)."""
        if i in self.tmap:
            return self.tmap[i]
        m = self.m
        t = m.tensor(i)
        if t.type != _INT8:
            raise ConversionError("tensor %d (%s) is not int8 (TFLite type %d); only full-int8 models convert"
                                  % (i, m.name(i), t.type))
        if m.is_const(i):
            return self.const(i)
        self.tensors.append({"dims": _dims4(m.shape(i), "tensor %d (%s)" % (i, m.name(i))),
                             "zp": m.zero_point(i), "const": None, "scale": m.scale(i)})
        self.tmap[i] = len(self.tensors) - 1
        return self.tmap[i]

    def const(self, i: int) -> int:
        m = self.m
        data = m.const_array(i, np.int8)
        self.tensors.append({"dims": _dims4(m.shape(i), "tensor %d (%s)" % (i, m.name(i))),
                             "zp": m.zero_point(i), "const": data.tobytes(), "scale": m.scale(i)})
        self.tmap[i] = len(self.tensors) - 1
        return self.tmap[i]

    def emit(self, opcode: int, ins: list[int], out: int, body: bytes) -> None:
        self.records.append(_record(opcode, body))
        self.rec_tensors.append((ins, out))

    # -- ops
    def fully_connected(self, op, opts):
        m = self.m
        inp, w, bias = op.inputs[0], op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else -1
        out = op.outputs[0]
        if opts.weightsFormat != 0:
            raise ConversionError("FULLY_CONNECTED with shuffled weights is not supported")
        if m.tensor(w).type != _INT8:
            raise ConversionError("FULLY_CONNECTED weights must be int8 (type %d)" % m.tensor(w).type)
        weights = m.const_array(w, np.int8)
        n_out, n_in = weights.shape
        fscales = m.scales(w)
        in_s, out_s = m.scale(inp), m.scale(out)
        per_channel = len(fscales) > 1
        if per_channel:
            mults = _per_channel_multipliers(in_s, fscales, out_s, n_out)
        else:
            # GetQuantizedConvolutionMultipler: input*filter in float, then double.
            prod = float(np.float32(in_s) * np.float32(fscales[0]))
            mults = [qm.quantize_multiplier(prod / float(np.float32(out_s)))]
        b = m.const_array(bias, np.int32).reshape(-1) if bias >= 0 else np.zeros(n_out, np.int32)
        lo, hi = qm.activation_range(opts.fusedActivationFunction, out_s, m.zero_point(out))
        bi, bo = self.act(inp), self.act(out)
        n_elems = int(np.prod(self.tensors[bi]["dims"]))
        if n_elems % n_in:
            raise ConversionError("FULLY_CONNECTED input has %d elements, not a multiple of %d" % (n_elems, n_in))
        body = struct.pack("<HHbbBBHH", bi, bo, lo, hi, 1 if per_channel else 0, 0, n_in, n_out)
        self.emit(B.OP_FULLY_CONNECTED, [bi], bo, body + _mults_arrays(mults, b, weights))

    def conv(self, op, opts, depthwise: bool):
        m = self.m
        inp, w, bias = op.inputs[0], op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else -1
        out = op.outputs[0]
        weights = m.const_array(w, np.int8)
        bi, bo = self.act(inp), self.act(out)
        _, ih, iw, ic = self.tensors[bi]["dims"]
        _, oh, ow, oc = self.tensors[bo]["dims"]
        if depthwise:
            _, kh, kw, wc = weights.shape
            if wc != oc or oc % ic:
                raise ConversionError("DEPTHWISE_CONV_2D channels %d -> %d with filter %s" % (ic, oc, weights.shape))
            dm = oc // ic
            if opts.depthMultiplier not in (0, dm):
                raise ConversionError("DEPTHWISE_CONV_2D depth_multiplier %d != %d" % (opts.depthMultiplier, dm))
        else:
            wo, kh, kw, wi = weights.shape
            if wo != oc or wi != ic:
                raise ConversionError("CONV_2D filter %s does not match channels %d -> %d (grouped conv?)"
                                      % (weights.shape, ic, oc))
            dm = 0
        dh, dw = opts.dilationHFactor or 1, opts.dilationWFactor or 1
        out_h, pad_t = _compute_padding(opts.strideH, dh, ih, kh, opts.padding)
        out_w, pad_l = _compute_padding(opts.strideW, dw, iw, kw, opts.padding)
        if (out_h, out_w) != (oh, ow):
            raise ConversionError("conv output %dx%d, expected %dx%d" % (oh, ow, out_h, out_w))
        fscales = m.scales(w)
        mults = _per_channel_multipliers(m.scale(inp), fscales, m.scale(out), oc if len(fscales) > 1 else 1)
        b = m.const_array(bias, np.int32).reshape(-1) if bias >= 0 else np.zeros(oc, np.int32)
        lo, hi = qm.activation_range(opts.fusedActivationFunction, m.scale(out), m.zero_point(out))
        for v in (opts.strideH, opts.strideW, dh, dw, pad_t, pad_l):
            if not 0 <= v <= 255:
                raise ConversionError("conv stride/dilation/padding %d does not fit in a byte" % v)
        body = struct.pack("<HHbbBBBBBBHHBBH", bi, bo, lo, hi, opts.strideH, opts.strideW, dh, dw,
                           pad_t, pad_l, kh, kw, 1 if len(fscales) > 1 else 0, dm, 0)
        self.emit(B.OP_DEPTHWISE_CONV_2D if depthwise else B.OP_CONV_2D, [bi], bo,
                  body + _mults_arrays(mults, b, weights))

    def pool(self, op, opts, opcode):
        m = self.m
        inp, out = op.inputs[0], op.outputs[0]
        bi, bo = self.act(inp), self.act(out)
        _, ih, iw, _ = self.tensors[bi]["dims"]
        _, oh, ow, _ = self.tensors[bo]["dims"]
        out_h, pad_t = _compute_padding(opts.strideH, 1, ih, opts.filterHeight, opts.padding)
        out_w, pad_l = _compute_padding(opts.strideW, 1, iw, opts.filterWidth, opts.padding)
        if (out_h, out_w) != (oh, ow):
            raise ConversionError("pool output %dx%d, expected %dx%d" % (oh, ow, out_h, out_w))
        if (m.scale(inp), m.zero_point(inp)) != (m.scale(out), m.zero_point(out)):
            raise ConversionError("pooling with different input/output quantization is not supported")
        lo, hi = qm.activation_range(opts.fusedActivationFunction, m.scale(out), m.zero_point(out))
        vals = (opts.strideH, opts.strideW, opts.filterHeight, opts.filterWidth, pad_t, pad_l)
        if any(not 0 <= v <= 255 for v in vals):
            raise ConversionError("pool parameters %s do not fit in a byte" % (vals,))
        self.emit(opcode, [bi], bo, struct.pack("<HHbbBBBBBB", bi, bo, lo, hi, *vals))

    def reshape(self, op):
        inp, out = op.inputs[0], op.outputs[0]
        bi, bo = self.act(inp), self.act(out)
        ti, to = self.tensors[bi], self.tensors[bo]
        if int(np.prod(ti["dims"])) != int(np.prod(to["dims"])) or ti["zp"] != to["zp"]:
            raise ConversionError("RESHAPE changes size or quantization")
        self.aliases.append((bi, bo))
        self.emit(B.OP_RESHAPE, [bi], bo, struct.pack("<HH", bi, bo))

    def softmax(self, op, opts):
        m = self.m
        inp, out = op.inputs[0], op.outputs[0]
        if m.zero_point(out) != -128 or abs(m.scale(out) - 1 / 256) > 1e-3 / 256:
            raise ConversionError("SOFTMAX output must be scale 1/256, zero point -128 (TFLM requires it)")
        bi, bo = self.act(inp), self.act(out)
        lut = _softmax_exp_lut(opts.beta, m.scale(inp))
        self.emit(B.OP_SOFTMAX, [bi], bo, struct.pack("<HH256i", bi, bo, *lut))

    def lut(self, op, tanh: bool):
        m = self.m
        inp, out = op.inputs[0], op.outputs[0]
        want_zp, want_scale = (0, 1 / 128) if tanh else (-128, 1 / 256)
        if m.zero_point(out) != want_zp or abs(m.scale(out) - want_scale) > 1e-3 * want_scale:
            raise ConversionError("%s output must be scale %g, zero point %d"
                                  % ("TANH" if tanh else "LOGISTIC", want_scale, want_zp))
        bi, bo = self.act(inp), self.act(out)
        lut = _logistic_tanh_lut(m.scale(inp), m.zero_point(inp), tanh)
        self.emit(B.OP_TANH if tanh else B.OP_LOGISTIC, [bi], bo, struct.pack("<HH256b", bi, bo, *lut))

    def add(self, op, opts):
        m = self.m
        i1, i2, out = op.inputs[0], op.inputs[1], op.outputs[0]
        b1, b2, bo = self.act(i1), self.act(i2), self.act(out)
        d1, d2, do = self.tensors[b1]["dims"], self.tensors[b2]["dims"], self.tensors[bo]["dims"]
        for k in range(4):
            if max(d1[k], d2[k]) != do[k] or min(d1[k], d2[k]) not in (1, do[k]):
                raise ConversionError("ADD shapes %s + %s -> %s do not broadcast" % (d1, d2, do))
        s1, s2, so = (float(np.float32(m.scale(t))) for t in (i1, i2, out))
        left_shift = 20
        twice_max = 2 * max(s1, s2)
        m1 = qm.quantize_multiplier(s1 / twice_max)
        m2 = qm.quantize_multiplier(s2 / twice_max)
        mo = qm.quantize_multiplier(twice_max / ((1 << left_shift) * so))
        for mult in (m1, m2, mo):
            if mult[1] > 0:
                raise ConversionError("ADD multiplier above one (TFLM requires smaller than one)")
        lo, hi = qm.activation_range(opts.fusedActivationFunction, m.scale(out), m.zero_point(out))
        self.emit(B.OP_ADD, [b1, b2], bo, struct.pack("<HHHbbiiiiiii", b1, b2, bo, lo, hi, left_shift,
                                                       m1[0], m1[1], m2[0], m2[1], mo[0], mo[1]))

    def mean(self, op, opts):
        m = self.m
        inp, ax, out = op.inputs[0], op.inputs[1], op.outputs[0]
        bi, bo = self.act(inp), self.act(out)
        rank = len(m.shape(inp))
        axes = m.const_array(ax, np.int32).reshape(-1)
        mask = 0
        for a in axes:
            a = int(a) + rank if a < 0 else int(a)
            if not 0 <= a < rank:
                raise ConversionError("MEAN axis %d out of range" % a)
            mask |= 1 << (a + 4 - rank)
        dims = self.tensors[bi]["dims"]
        n = 1
        for k in range(4):
            if mask & (1 << k):
                n *= dims[k]
        n_out = int(np.prod(dims)) // n
        if int(np.prod(self.tensors[bo]["dims"])) != n_out:
            raise ConversionError("MEAN output size does not match the reduced input")
        # PrepareMeanOrSumHelper: input_scale / output_scale in double. The 1/n
        # factor is folded in at run time, as TFLM's QuantizedMeanOrSum does.
        mult, shift = qm.quantize_multiplier(float(np.float32(m.scale(inp))) / float(np.float32(m.scale(out))))
        self.emit(B.OP_MEAN, [bi], bo, struct.pack("<HHBBBBii", bi, bo, mask, 0, 0, 0, mult, shift))

    def quantize(self, op):
        m = self.m
        inp, out = op.inputs[0], op.outputs[0]
        bi, bo = self.act(inp), self.act(out)
        mult, shift = qm.quantize_multiplier(float(np.float32(m.scale(inp))) / float(np.float32(m.scale(out))))
        self.emit(B.OP_QUANTIZE, [bi], bo, struct.pack("<HHii", bi, bo, mult, shift))

    # -- driver
    def run(self, name: str, version: int, meta: dict | None = None) -> bytes:
        m = self.m
        g = m.g
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise ConversionError("model has %d inputs and %d outputs; the blob supports exactly one of each"
                                  % (len(g.inputs), len(g.outputs)))
        ops = list(g.operators)
        graph_in, graph_out = int(g.inputs[0]), int(g.outputs[0])
        # Fold a float QUANTIZE at the input and a DEQUANTIZE at the output.
        if ops and m.opcode(ops[0]) == B.OP_QUANTIZE and m.tensor(ops[0].inputs[0]).type == _FLOAT32 \
                and ops[0].inputs[0] == graph_in:
            graph_in = int(ops[0].outputs[0])
            ops = ops[1:]
        if ops and m.opcode(ops[-1]) == _OP_DEQUANTIZE and ops[-1].outputs[0] == graph_out:
            graph_out = int(ops[-1].inputs[0])
            ops = ops[:-1]
        for idx, op in enumerate(g.operators):
            if op not in ops:
                continue
            code = m.opcode(op)
            if code not in B.OP_NAMES:
                raise ConversionError("unsupported op %s (opcode %d) at operator %d"
                                      % (self.names.get(code, "?"), code, idx))
        if not ops:
            raise ConversionError("model has no operators to convert")
        bin_ = self.act(graph_in)
        for idx, op in enumerate(g.operators):
            if op not in ops:
                continue
            code = m.opcode(op)
            opts = op.builtinOptions
            try:
                if code == B.OP_FULLY_CONNECTED:
                    self.fully_connected(op, opts)
                elif code in (B.OP_CONV_2D, B.OP_DEPTHWISE_CONV_2D):
                    self.conv(op, opts, code == B.OP_DEPTHWISE_CONV_2D)
                elif code in (B.OP_AVERAGE_POOL_2D, B.OP_MAX_POOL_2D):
                    self.pool(op, opts, code)
                elif code == B.OP_RESHAPE:
                    self.reshape(op)
                elif code == B.OP_SOFTMAX:
                    self.softmax(op, opts)
                elif code in (B.OP_LOGISTIC, B.OP_TANH):
                    self.lut(op, code == B.OP_TANH)
                elif code == B.OP_ADD:
                    self.add(op, opts)
                elif code == B.OP_MEAN:
                    self.mean(op, opts)
                elif code == B.OP_QUANTIZE:
                    if m.tensor(op.inputs[0]).type != _INT8:
                        raise ConversionError("QUANTIZE from TFLite type %d inside the graph"
                                              % m.tensor(op.inputs[0]).type)
                    self.quantize(op)
            except ConversionError as e:
                raise ConversionError("%s at operator %d: %s" % (B.OP_NAMES[code], idx, e)) from None
        bout = self.act(graph_out)
        return self.assemble(name, version, bin_, bout, meta)

    def plan_arena(self, bin_: int, bout: int) -> list[int]:
        """First fit by lifetime, 4-byte aligned; RESHAPE output shares its input's block."""
        n_ops = len(self.records)
        root = list(range(len(self.tensors)))

        def find(x):
            while root[x] != x:
                x = root[x]
            return x
        for a, b in self.aliases:
            if self.tensors[a]["const"] is None:
                root[find(b)] = find(a)
        first: dict[int, int] = {}
        last: dict[int, int] = {}

        def touch(t, k):
            if self.tensors[t]["const"] is not None:
                return
            r = find(t)
            first[r] = min(first.get(r, k), k)
            last[r] = max(last.get(r, k), k)
        touch(bin_, -1)
        for k, (ins, out) in enumerate(self.rec_tensors):
            for t in ins:
                touch(t, k)
            touch(out, k)
        touch(bout, n_ops)
        size = {r: _a4(int(np.prod(self.tensors[r]["dims"]))) for r in first}
        placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
        offset: dict[int, int] = {}
        for r in sorted(first, key=lambda r: (-size[r], first[r])):
            cands = sorted([0] + [o + s for o, s, f, l_ in placed])
            for c in cands:
                ok = all(not (c < o + s and o < c + size[r] and first[r] <= l_ and f <= last[r])
                         for o, s, f, l_ in placed)
                if ok:
                    break
            offset[r] = c
            placed.append((c, size[r], first[r], last[r]))
        offs = []
        for t in range(len(self.tensors)):
            offs.append(offset.get(find(t), 0) if self.tensors[t]["const"] is None else -1)
        self.arena_size = max([o + s for o, s, _, _ in placed] + [0])
        return offs

    def assemble(self, name: str, version: int, bin_: int, bout: int, meta: dict | None = None) -> bytes:
        nb = name.encode("ascii")
        if not 1 <= len(nb) <= 31:
            raise ConversionError("model name must be 1..31 ASCII characters")
        mb = b""
        if meta:
            text = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
            if len(text) > B.MAX_META:
                raise ConversionError("metadata is %d bytes, limit %d" % (len(text), B.MAX_META))
            mb = struct.pack("<H", len(text)) + text
        header_size = _a4(41 + len(nb) + len(mb))
        offs = self.plan_arena(bin_, bout)
        table_off = header_size
        ops_off = table_off + 12 * len(self.tensors)
        records = b"".join(self.records)
        const_off = ops_off + len(records)
        consts = b""
        for t, tensor in enumerate(self.tensors):
            if tensor["const"] is not None:
                offs[t] = const_off + len(consts)
                consts += _pad4(tensor["const"])
        blob_size = const_off + len(consts)
        if blob_size > 4 * 0xFFFF or self.arena_size > 4 * 0xFFFF:
            raise ConversionError("blob (%d B) or arena (%d B) exceeds 256 KiB" % (blob_size, self.arena_size))
        table = b""
        for t, tensor in enumerate(self.tensors):
            table += struct.pack("<HHHHHbB", offs[t] // 4, *tensor["dims"], tensor["zp"],
                                 1 if tensor["const"] is not None else 0)
        body = struct.pack("<IHHIHHffB", version, len(self.tensors), len(self.records), self.arena_size,
                           bin_, bout, self.tensors[bin_]["scale"], self.tensors[bout]["scale"], len(nb))
        flags = B.FLAG_META if mb else 0
        header = (B.MAGIC + struct.pack("<BBHI", B.FORMAT_VERSION, flags, header_size, blob_size) + b"\0\0\0\0"
                  + body + nb + mb)
        header += bytes(header_size - len(header))
        out = bytearray(header + table + records + consts)
        struct.pack_into("<I", out, 12, zlib.crc32(out[16:]) & 0xFFFFFFFF)
        return bytes(out)


def convert(tflite_bytes: bytes, name: str = "model", version: int = 1, meta: dict | None = None) -> bytes:
    """int8 .tflite bytes -> model blob bytes. Raises ConversionError naming the problem.
    `meta` (e.g. {"task": "anomaly", "threshold": 0.023, "classes": [...]}) travels in the
    header, so an OTA update brings the decision rule that belongs to its weights."""
    return _Converter(tflite_bytes).run(name, version, meta)


@dataclass
class BlobInfo:
    name: str
    model_version: int
    blob_size: int
    arena_size: int
    input_shape: tuple
    output_shape: tuple
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    ops: list


def info(blob: bytes) -> BlobInfo:
    hdr = B.parse(blob)
    ts = B.tensors(blob, hdr)
    return BlobInfo(hdr["name"], hdr["model_version"], hdr["blob_size"], hdr["arena_size"],
                    ts[hdr["input"]][1], ts[hdr["output"]][1], hdr["input_scale"], hdr["input_zero_point"],
                    hdr["output_scale"], hdr["output_zero_point"],
                    [(B.OP_NAMES[c], size) for c, _, size in B.ops(blob, hdr)])


def describe(blob: bytes) -> str:
    """A human summary of a blob."""
    i = info(blob)
    lines = ["%s v%d: %d B blob, %d B arena" % (i.name, i.model_version, i.blob_size, i.arena_size),
             "input %s scale %.6g zp %d -> output %s scale %.6g zp %d"
             % (i.input_shape, i.input_scale, i.input_zero_point, i.output_shape, i.output_scale,
                i.output_zero_point)]
    lines += ["  %2d %-18s %6d B" % (k, n, s) for k, (n, s) in enumerate(i.ops)]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    from pathlib import Path
    src = Path(sys.argv[1])
    data = convert(src.read_bytes(), src.stem[:31], 1)
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".blob")
    dst.write_bytes(data)
    print(describe(data))
