"""Model blob -> model-specific C (one file, for a fixed firmware build).

Weights become const arrays, each op becomes one call of a static inline kernel
from tfm_kernels.h with every shape, zero point and clamp as a literal, so the
compiler folds and specialises them. FULLY_CONNECTED and 1x1 stride-1 CONV_2D
fold the input zero point into the bias (bias - zp_in * sum(w), exact in
int32), which leaves a plain int8 dot product (SMLAD on the M4).
The result is bit-exact with the blob runtime and with TFLM.

The generated file exports `void tfmg_invoke(const int8_t *input, int8_t *output)`
and needs tfm_kernels.h on the include path.

    python -m node_firmware.c.codegen [--speed] model.blob model.c
"""
from __future__ import annotations

import sys

import numpy as np

from contract import blob as B


def _arr(ctype: str, name: str, values, per_line: int = 16) -> str:
    vals = [int(v) for v in np.asarray(values).reshape(-1)]
    if not vals:
        vals = [0]
    lines = [", ".join(str(v) for v in vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "static const %s %s[%d] = {\n    %s\n};\n" % (ctype, name, len(vals), ",\n    ".join(lines))


def _i32(buf, off, n):
    return np.frombuffer(bytes(buf[off:off + 4 * n]), dtype="<i4").astype(np.int64)


def _i8(buf, off, n):
    return np.frombuffer(bytes(buf[off:off + n]), dtype=np.int8).astype(np.int64)


HOT_MACS = 4096  # speed variant: layers with at least this many MACs get an -O2 function


def _macs(b: bytes, hdr: dict, ts: list, code: int, off: int) -> int:
    if code == B.OP_FULLY_CONNECTED:
        f = B.fc_fields(b, off)
        return int(np.prod(ts[f[0]][1])) * f[6]
    if code in (B.OP_CONV_2D, B.OP_DEPTHWISE_CONV_2D):
        f = B.conv_fields(b, hdr, off)
        return int(np.prod(ts[f[1]][1])) * f[10] * f[11] * (ts[f[0]][1][3] if code == B.OP_CONV_2D else 1)
    return 0


def _wrap32(v: np.ndarray) -> np.ndarray:
    """int32 two's-complement wrap, as the C accumulator would."""
    return ((np.asarray(v, dtype=np.int64) + 2**31) % 2**32) - 2**31


class _Gen:
    def __init__(self, blob: bytes, speed: bool):
        self.speed = speed
        self.b = bytes(blob)
        self.hdr = B.parse(self.b)
        self.ts = B.tensors(self.b, self.hdr)
        self.decls: list[str] = []
        self.body: list[str] = []
        self.scratch = 0  # int32 words MEAN needs
        self.pad = 0  # bytes of the zero-point padded input frame
        self.col = 0  # bytes of one conv patch (im2col)

    def t(self, i: int) -> str:
        """C expression for tensor i's data."""
        off, dims, zp, const = self.ts[i]
        if const:
            name = "c%d" % i
            if not any(d.startswith("static const int8_t %s[" % name) for d in self.decls):
                self.decls.append(_arr("int8_t", name, _i8(self.b, off, int(np.prod(dims)))))
            return name
        return "(A + %d)" % off

    def n(self, i: int) -> int:
        return int(np.prod(self.ts[i][1]))

    def mults(self, k: int, mult_off: int, shift_off: int, m: int, bias, w) -> int:
        """Emits multiplier/shift arrays; returns tfm_requant's mode (see tfm_kernels.h)."""
        mult, shift = _i32(self.b, mult_off, m), _i8(self.b, shift_off, m)
        if np.any(mult == -2**31) or np.any(shift < -31) or np.any(shift > 30):
            raise ValueError("codegen: op %d has a multiplier or shift TFLM never produces" % k)
        self.decls.append(_arr("int32_t", "m%d" % k, mult))
        self.decls.append(_arr("int8_t", "s%d" % k, shift))
        if np.any(shift > 0):
            return 0
        # |acc| <= |bias| + |zp_in| * sum|w| + 128 * sum|w| before or after folding the zero point
        wabs = np.abs(np.asarray(w, dtype=np.int64)).reshape(-1)
        bound = int(np.max(np.abs(bias))) + 256 * int(wabs.sum()) if len(wabs) else 2**31
        return 2 if np.all(shift <= -1) and bound < 2**30 else 1

    def fc_like(self, k, x, y, w, bias, pc, mode, n_in, n_out, batches, zp_in, zp_out, lo, hi):
        w2 = w.reshape(n_out, n_in)
        folded = _wrap32(bias - zp_in * w2.sum(axis=1))
        self.decls.append(_arr("int8_t", "w%d" % k, w))
        self.decls.append(_arr("int32_t", "b%d" % k, folded))
        fc4 = self.speed and n_in % 4 == 0 and n_out % 4 == 0 and n_in * n_out * batches >= HOT_MACS
        self.body.append("tfm_k_fc%s(%s, %s, w%d, b%d, m%d, s%d, %d, %d, %d, %d, %d, %d, %d, %d);"
                         % ("4" if fc4 else "", x, y, k, k, k, k, pc, mode, n_in, n_out, batches, zp_out, lo, hi))

    def op(self, k: int, code: int, off: int) -> None:
        n_body = len(self.body)
        self.op_body(k, code, off)
        if self.speed and len(self.body) > n_body and _macs(self.b, self.hdr, self.ts, code, off) >= HOT_MACS:
            stmt = self.body.pop()
            self.decls.append("TFM_HOT void layer%d(int8_t *A)\n{\n    %s\n}\n" % (k, stmt))
            self.body.append("layer%d(A);" % k)

    def op_body(self, k: int, code: int, off: int) -> None:
        b, ts = self.b, self.ts
        if code == B.OP_FULLY_CONNECTED:
            inp, out, lo, hi, pc, n_in, n_out, mo, so, bo, wo = B.fc_fields(b, off)
            w, bias = _i8(b, wo, n_in * n_out), _i32(b, bo, n_out)
            mode = self.mults(k, mo, so, n_out if pc else 1, bias, w)
            self.fc_like(k, self.t(inp), self.t(out), w, bias, pc, mode, n_in,
                         n_out, self.n(inp) // n_in if n_in else 0, ts[inp][2], ts[out][2], lo, hi)
        elif code in (B.OP_CONV_2D, B.OP_DEPTHWISE_CONV_2D):
            (inp, out, lo, hi, sh, sw, dh, dw, pt, pl, kh, kw, pc, dm, oc, mo, so, bo, wo, _) = \
                B.conv_fields(b, self.hdr, off)
            n, ih, iw, ic = ts[inp][1]
            _, oh, ow, _ = ts[out][1]
            dw_ = code == B.OP_DEPTHWISE_CONV_2D
            nw = kh * kw * oc * (1 if dw_ else ic)
            w, bias = _i8(b, wo, nw), _i32(b, bo, oc)
            mode = self.mults(k, mo, so, oc if pc else 1, bias, w)
            if not dw_ and kh == kw == sh == sw == 1 and pt == pl == 0 and (oh, ow) == (ih, iw):
                self.fc_like(k, self.t(inp), self.t(out), w, bias, pc, mode, ic, oc, n * ih * iw, ts[inp][2],
                             ts[out][2], lo, hi)
                return
            # Pad the input into a zero-point frame large enough for every tap,
            # fold -zp_in * sum(w) into the bias: no bounds checks, plain dot products.
            ph = max(pt + ih, (oh - 1) * sh + (kh - 1) * dh + 1)
            pw = max(pl + iw, (ow - 1) * sw + (kw - 1) * dw + 1)
            zp_in = ts[inp][2]
            wsum = w.reshape(kh * kw, oc).sum(axis=0) if dw_ else w.reshape(oc, -1).sum(axis=1)
            self.decls.append(_arr("int8_t", "w%d" % k, w))
            self.decls.append(_arr("int32_t", "b%d" % k, _wrap32(bias - zp_in * wsum)))
            x = self.t(inp)
            if (ph, pw, pt, pl) != (ih, iw, 0, 0):
                self.pad = max(self.pad, n * ph * pw * ic)
                self.body.append("tfm_k_pad(%s, P, %d, %d, %d, %d, %d, %d, %d, %d, %d);"
                                 % (x, n, ih, iw, ic, pt, pl, ph, pw, zp_in))
                x = "P"
            if dw_ and dm == 1 and ic % 4 == 0:
                self.body.append("tfm_k_dw4(%s, %s, w%d, b%d, m%d, s%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, "
                                 "%d, %d, %d, %d, %d, %d, %d);"
                                 % (x, self.t(out), k, k, k, k, pc, mode, n, ph, pw, ic, oh, ow, kh, kw, sh, sw, dh, dw,
                                    ts[out][2], lo, hi))
                return
            if not dw_ and dw == 1:
                self.col = max(self.col, kh * kw * ic)
                self.body.append("tfm_k_conv_col(%s, %s, (int8_t *)Cw, w%d, b%d, m%d, s%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, "
                                 "%d, %d, %d, %d, %d, %d, %d, %d);"
                                 % (x, self.t(out), k, k, k, k, pc, mode, n, ph, pw, ic, oh, ow, oc, kh, kw, sh, sw, dh,
                                    ts[out][2], lo, hi))
                return
            self.body.append("tfm_k_conv_p(%s, %s, w%d, b%d, m%d, s%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, "
                             "%d, %d, %d, %d, %d, %d, %d, %d, %d);"
                             % (x, self.t(out), k, k, k, k, pc, mode, n, ph, pw, ic, oh, ow, oc, kh, kw,
                                sh, sw, dh, dw, dm if dw_ else 0, ts[out][2], lo, hi))
        elif code in (B.OP_AVERAGE_POOL_2D, B.OP_MAX_POOL_2D):
            inp, out, lo, hi, sh, sw, fh, fw, pt, pl = B.pool_fields(b, off)
            n, ih, iw, c = ts[inp][1]
            _, oh, ow, _ = ts[out][1]
            self.body.append("tfm_k_pool(%s, %s, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d);"
                             % (self.t(inp), self.t(out), code == B.OP_MAX_POOL_2D, n, ih, iw, c, oh, ow,
                                fh, fw, sh, sw, pt, pl, lo, hi))
        elif code == B.OP_RESHAPE:
            inp, out = B.reshape_fields(b, off)
            if self.t(inp) != self.t(out):
                self.body.append("memmove(%s, %s, %d);" % (self.t(out), self.t(inp), self.n(inp)))
        elif code == B.OP_QUANTIZE:
            inp, out, m, s = B.quantize_fields(b, off)
            self.body.append("tfm_k_quantize(%s, %s, %d, %d, %d, %d, %d);"
                             % (self.t(inp), self.t(out), self.n(inp), ts[inp][2], m, s, ts[out][2]))
        elif code in (B.OP_LOGISTIC, B.OP_TANH):
            inp, out, lut = B.lut_fields(b, off)
            self.decls.append(_arr("int8_t", "lut%d" % k, _i8(b, lut, 256)))
            self.body.append("tfm_k_lut(%s, %s, lut%d, %d);" % (self.t(inp), self.t(out), k, self.n(inp)))
        elif code == B.OP_SOFTMAX:
            inp, out, lut = B.softmax_fields(b, off)
            self.decls.append(_arr("int32_t", "exp%d" % k, _i32(b, lut, 256), 8))
            depth = ts[inp][1][3]
            self.body.append("tfm_k_softmax(%s, %s, exp%d, %d, %d);"
                             % (self.t(inp), self.t(out), k, self.n(inp) // depth, depth))
        elif code == B.OP_ADD:
            in1, in2, out, lo, hi, ls, m1, s1, m2, s2, mo, so = B.add_fields(b, off)
            od = ts[out][1]

            def strides(t):
                d = ts[t][1]
                full = [d[1] * d[2] * d[3], d[2] * d[3], d[3], 1]
                return [0 if d[i] == 1 and od[i] != 1 else full[i] for i in range(4)]
            self.body.append("{ static const int od[4] = {%s}, s1[4] = {%s}, s2[4] = {%s};\n"
                             "      tfm_k_add(%s, %s, %s, od, s1, s2, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d); }"
                             % (", ".join(map(str, od)), ", ".join(map(str, strides(in1))),
                                ", ".join(map(str, strides(in2))), self.t(in1), self.t(in2), self.t(out),
                                ts[in1][2], ts[in2][2], ls, m1, s1, m2, s2, mo, so, ts[out][2], lo, hi))
        elif code == B.OP_MEAN:
            inp, out, mask, mult, shift = B.mean_fields(b, off)
            d = ts[inp][1]
            full = [d[1] * d[2] * d[3], d[2] * d[3], d[3], 1]
            kept = [1 if mask >> i & 1 else d[i] for i in range(4)]
            red = [d[i] if mask >> i & 1 else 1 for i in range(4)]
            n, n_out = int(np.prod(red)), int(np.prod(kept))
            if n == 0 or n_out == 0:
                return
            # TFLM QuantizedMeanOrSum folds 1/n into the multiplier (same as the runtime)
            s = min(n.bit_length() - 1, 32, 31 + shift)
            s = max(s, 0)
            mult, shift = (mult << s) // n, shift - s
            self.scratch = max(self.scratch, n_out)
            self.body.append("{ static const int kept[4] = {%s}, red[4] = {%s}, st[4] = {%s};\n"
                             "      int o;\n"
                             "      tfm_k_sums(%s, S, kept, red, st);\n"
                             "      for (o = 0; o < %d; o++)\n"
                             "        %s[o] = (int8_t)tfm_clamp(tfm_mbqm((int32_t)((uint32_t)S[o] - %du), %d, %d) + %d, -128, 127); }"
                             % (", ".join(map(str, kept)), ", ".join(map(str, red)), ", ".join(map(str, full)),
                                self.t(inp), n_out, self.t(out), (ts[inp][2] * n) % 2**32, mult, shift,
                                ts[out][2]))
        else:  # B.ops already rejects unknown opcodes; this guards new ones
            raise ValueError("codegen: no kernel for opcode %d" % code)

    def run(self) -> str:
        hdr, ts = self.hdr, self.ts
        for k, (code, off, _) in enumerate(B.ops(self.b, hdr)):
            self.op(k, code, off)
        n_in, n_out = self.n(hdr["input"]), self.n(hdr["output"])
        arena_words = max(1, (hdr["arena_size"] + 3) // 4)
        lines = ["/* Generated by node_firmware/c/codegen.py from model blob '%s' v%d (crc32 %08x).\n"
                 " * Do not edit: regenerate from the blob. */" % (hdr["name"], hdr["model_version"], hdr["crc"]),
                 "#include <stdint.h>", "#include <string.h>"]
        if self.speed:
            lines.append("#define TFM_SPEED 1 /* inline every kernel call: faster, larger */")
        lines += ['#include "tfm_kernels.h"', "",
                 "void tfmg_invoke(const int8_t *input, int8_t *output);", "",
                 "static int32_t arena[%d]; /* int32: 4-byte aligned */" % arena_words]
        if self.scratch:
            lines.append("static int32_t S[%d]; /* MEAN sums */" % self.scratch)
        if self.pad:
            lines.append("static int8_t P[%d]; /* zero-point padded conv input */" % self.pad)
        if self.col:
            lines.append("static int32_t Cw[%d]; /* one conv patch, 4-byte aligned */" % ((self.col + 3) // 4))
        lines += [""] + self.decls
        lines += ["void tfmg_invoke(const int8_t *input, int8_t *output)", "{",
                  "    int8_t *A = (int8_t *)arena;",
                  "    memcpy(%s, input, %d);" % (self.t(hdr["input"]), n_in)]
        lines += ["    " + s for s in self.body]
        lines += ["    memcpy(output, %s, %d);" % (self.t(hdr["output"]), n_out), "}", ""]
        return "\n".join(lines)


def generate(blob: bytes, speed: bool = False) -> str:
    """C source for the model in `blob` (validated with contract.blob.parse first).

    speed=False: smallest code (the compiler may share one kernel between
    layers); speed=True: every kernel call inlined with its constants folded."""
    return _Gen(blob, speed).run()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--speed"]
    code = generate(open(args[0], "rb").read(), speed="--speed" in sys.argv)
    if len(args) > 1:
        open(args[1], "w").write(code)
    else:
        sys.stdout.write(code)
