"""The numpy reference runtime for TinyFleet model blobs, bit-exact with TFLM.

Used by the gateway and cloud to check a blob before it ships, by simulated
nodes, and as the yardstick for the MicroPython and C runtimes when no .tflite
is at hand. Only integer arithmetic on the inference path: every constant was
prepared by training/tflite_to_blob.py the way TFLM's Prepare does it.
"""
from __future__ import annotations

import numpy as np

from contract import blob as B
from training import quant_math as qm


def _arr(buf: bytes, dtype, off: int, count: int) -> np.ndarray:
    return np.frombuffer(buf, dtype=dtype, count=count, offset=off).astype(np.int64)


def _clamp8(x: np.ndarray, lo: int = -128, hi: int = 127) -> np.ndarray:
    return np.clip(x, lo, hi).astype(np.int8)


def _window(x: np.ndarray, pad_top: int, pad_left: int, out_h: int, out_w: int, k_h: int, k_w: int,
            s_h: int, s_w: int, d_h: int, d_w: int, fill: int):
    """Padded copy of NHWC x covering every tap, and a function giving tap (ky, kx) as (N, OH, OW, C)."""
    n, h, w, c = x.shape
    need_h = (out_h - 1) * s_h + (k_h - 1) * d_h + 1
    need_w = (out_w - 1) * s_w + (k_w - 1) * d_w + 1
    big = np.full((n, max(need_h, pad_top + h), max(need_w, pad_left + w), c), fill, dtype=x.dtype)
    big[:, pad_top:pad_top + h, pad_left:pad_left + w, :] = x

    def tap(ky: int, kx: int) -> np.ndarray:
        y0, x0 = ky * d_h, kx * d_w
        return big[:, y0:y0 + (out_h - 1) * s_h + 1:s_h, x0:x0 + (out_w - 1) * s_w + 1:s_w, :]
    return tap


class Model:
    """A parsed blob with its own arena. `invoke(x)` takes the input tensor's
    int8 values (any shape with the right element count) and returns the
    output tensor's int8 values, flat."""

    def __init__(self, blob: bytes):
        self.blob = bytes(blob)
        self.hdr = B.parse(self.blob)
        self.tensors = B.tensors(self.blob, self.hdr)
        self.ops = B.ops(self.blob, self.hdr)
        self.arena_size = self.hdr["arena_size"]
        self.arena = np.zeros(max(self.arena_size, 4), dtype=np.int8)
        inp, out = self.tensors[self.hdr["input"]], self.tensors[self.hdr["output"]]
        self.name = self.hdr["name"]
        self.input_shape, self.output_shape = inp[1], out[1]
        self.input_scale, self.output_scale = self.hdr["input_scale"], self.hdr["output_scale"]
        self.input_zero_point, self.output_zero_point = inp[2], out[2]
        self.input_size = int(np.prod(self.input_shape))
        self.output_size = int(np.prod(self.output_shape))
        self._steps = [self._prepare(op, off) for op, off, _ in self.ops]

    # -- tensor access
    def _get(self, t: int) -> np.ndarray:
        off, dims, _, is_const = self.tensors[t]
        n = int(np.prod(dims))
        if is_const:
            return np.frombuffer(self.blob, np.int8, n, off).astype(np.int64).reshape(dims)
        return self.arena[off:off + n].astype(np.int64).reshape(dims)

    def _set(self, t: int, values: np.ndarray) -> None:
        off, dims, _, _ = self.tensors[t]
        n = int(np.prod(dims))
        self.arena[off:off + n] = np.asarray(values, dtype=np.int8).reshape(-1)

    def _zp(self, t: int) -> int:
        return self.tensors[t][2]

    # -- ops
    def _prepare(self, op: int, off: int):
        buf = self.blob
        if op == B.OP_FULLY_CONNECTED:
            inp, out, lo, hi, pc, n_in, n_out, mo, so, bo, wo = B.fc_fields(buf, off)
            m = n_out if pc else 1
            mult, shift = _arr(buf, "<i4", mo, m), _arr(buf, np.int8, so, m)
            bias = _arr(buf, "<i4", bo, n_out)
            wfc = _arr(buf, np.int8, wo, n_out * n_in).reshape(n_out, n_in)
            zi, zo = self._zp(inp), self._zp(out)

            def fc():
                x = self._get(inp).reshape(-1, n_in) - zi
                acc = qm.np_wrap32(x @ wfc.T + bias)
                self._set(out, _clamp8(qm.np_mbqm(acc, mult, shift) + zo, lo, hi))
            return fc
        if op in (B.OP_CONV_2D, B.OP_DEPTHWISE_CONV_2D):
            (inp, out, lo, hi, sh, sw, dh, dw, pt, pl, kh, kw, pc, dm, oc,
             mo, so, bo, wo, _) = B.conv_fields(buf, self.hdr, off)
            ic = self.tensors[inp][1][3]
            _, oh, ow, _ = self.tensors[out][1]
            m = oc if pc else 1
            mult, shift = _arr(buf, "<i4", mo, m), _arr(buf, np.int8, so, m)
            bias = _arr(buf, "<i4", bo, oc)
            depthwise = op == B.OP_DEPTHWISE_CONV_2D
            w: np.ndarray
            if depthwise:
                w = _arr(buf, np.int8, wo, kh * kw * oc).reshape(kh, kw, oc)
                chan = np.arange(oc) // dm
            else:
                w = _arr(buf, np.int8, wo, oc * kh * kw * ic).reshape(oc, kh, kw, ic)
            zi, zo = self._zp(inp), self._zp(out)

            def conv():
                # Padding with zeros after subtracting the input zero point == skipping the tap.
                tap = _window(self._get(inp) - zi, pt, pl, oh, ow, kh, kw, sh, sw, dh, dw, 0)
                acc = np.zeros((self.tensors[inp][1][0], oh, ow, oc), dtype=np.int64)
                for ky in range(kh):
                    for kx in range(kw):
                        xs = tap(ky, kx)
                        acc += xs[..., chan] * w[ky, kx] if depthwise else xs @ w[:, ky, kx, :].T
                acc = qm.np_wrap32(acc + bias)
                self._set(out, _clamp8(qm.np_mbqm(acc, mult, shift) + zo, lo, hi))
            return conv
        if op in (B.OP_AVERAGE_POOL_2D, B.OP_MAX_POOL_2D):
            inp, out, lo, hi, sh, sw, fh, fw, pt, pl = B.pool_fields(buf, off)
            n, ih, iw, c = self.tensors[inp][1]
            _, oh, ow, _ = self.tensors[out][1]
            if op == B.OP_MAX_POOL_2D:
                def maxpool():
                    tap = _window(self._get(inp), pt, pl, oh, ow, fh, fw, sh, sw, 1, 1, -1 << 20)
                    best = np.full((n, oh, ow, c), -1 << 20, dtype=np.int64)
                    for ky in range(fh):
                        for kx in range(fw):
                            best = np.maximum(best, tap(ky, kx))
                    self._set(out, _clamp8(best, lo, hi))
                return maxpool
            ones = np.ones((1, ih, iw, 1), dtype=np.int64)
            ctap = _window(ones, pt, pl, oh, ow, fh, fw, sh, sw, 1, 1, 0)
            count = sum(ctap(ky, kx) for ky in range(fh) for kx in range(fw))

            def avgpool():
                tap = _window(self._get(inp), pt, pl, oh, ow, fh, fw, sh, sw, 1, 1, 0)
                acc = sum(tap(ky, kx) for ky in range(fh) for kx in range(fw))
                num = np.where(acc > 0, acc + count // 2, acc - count // 2)
                q = np.abs(num) // count
                self._set(out, _clamp8(np.where(num >= 0, q, -q), lo, hi))
            return avgpool
        if op == B.OP_RESHAPE:
            inp, out = B.reshape_fields(buf, off)

            def reshape():
                if self.tensors[inp][0] != self.tensors[out][0] or self.tensors[inp][3]:
                    self._set(out, self._get(inp))
            return reshape
        if op == B.OP_QUANTIZE:
            inp, out, mult, shift = B.quantize_fields(buf, off)

            def quantize():
                x = self._get(inp) - self._zp(inp)
                self._set(out, _clamp8(qm.np_mbqm(x, mult, shift) + self._zp(out)))
            return quantize
        if op in (B.OP_LOGISTIC, B.OP_TANH):
            inp, out, lut_off = B.lut_fields(buf, off)
            lut = np.frombuffer(buf, np.int8, 256, lut_off)

            def lookup():
                self._set(out, lut[self._get(inp) + 128])
            return lookup
        if op == B.OP_SOFTMAX:
            inp, out, lut_off = B.softmax_fields(buf, off)
            lut = _arr(buf, "<i4", lut_off, 256)
            depth = self.tensors[inp][1][3]

            def softmax():
                x = self._get(inp).reshape(-1, depth)
                e = lut[x.max(axis=1, keepdims=True) - x]
                total = qm.np_rdbpot(e, 12).sum(axis=1)
                rows = [qm.get_reciprocal(int(s), 12) for s in total]
                scale = np.array([r[0] for r in rows], dtype=np.int64)[:, None]
                nbits = np.array([r[1] for r in rows], dtype=np.int64)[:, None]
                y = qm.np_rdbpot(qm.np_srdhm(scale, e), nbits + 23) - 128
                self._set(out, _clamp8(y))
            return softmax
        if op == B.OP_ADD:
            in1, in2, out, lo, hi, ls, m1, s1, m2, s2, mo, so = B.add_fields(buf, off)

            def add():
                a = qm.np_mbqm(qm.np_wrap32((self._get(in1) - self._zp(in1)) << ls), m1, s1)
                b = qm.np_mbqm(qm.np_wrap32((self._get(in2) - self._zp(in2)) << ls), m2, s2)
                y = qm.np_mbqm(qm.np_wrap32(a + b), mo, so) + self._zp(out)
                self._set(out, _clamp8(y, lo, hi))
            return add
        if op == B.OP_MEAN:
            inp, out, mask, mult, shift = B.mean_fields(buf, off)
            axes = tuple(k for k in range(4) if mask & (1 << k))
            n = int(np.prod([self.tensors[inp][1][k] for k in axes]))
            mult, shift = B.mean_multiplier(mult, shift, n)
            zi, zo = self._zp(inp), self._zp(out)

            def mean():
                s = qm.np_wrap32(self._get(inp).sum(axis=axes).reshape(-1) - zi * n)
                self._set(out, _clamp8(qm.np_mbqm(s, mult, shift) + zo))
            return mean
        raise B.BlobError("unknown opcode %d" % op)

    def invoke(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.size != self.input_size:
            raise ValueError("input has %d values, model %s takes %d" % (x.size, self.name, self.input_size))
        if x.dtype != np.int8:
            if np.any((x < -128) | (x > 127)):
                raise ValueError("input values must be int8")
        self._set(self.hdr["input"], x.astype(np.int8))
        for step in self._steps:
            step()
        return self._get(self.hdr["output"]).reshape(-1).astype(np.int8)


def run_batch(blob: bytes, inputs: np.ndarray) -> np.ndarray:
    """N int8 inputs -> (N, output_size) int8 outputs (the parity adapter signature)."""
    model = Model(blob)
    inputs = np.asarray(inputs)
    rows = inputs.reshape(inputs.shape[0], -1)
    return np.stack([model.invoke(r) for r in rows]) if len(rows) else np.zeros((0, model.output_size), np.int8)
