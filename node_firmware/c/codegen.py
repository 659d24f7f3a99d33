"""Model blob -> model-specific C (one file, for a fixed firmware build).

Weights become const arrays, each op becomes one call of a static inline kernel
from tfm_kernels.h with every shape, zero point and clamp as a literal, so the
compiler folds and specialises them. FULLY_CONNECTED and 1x1 stride-1 CONV_2D
fold the input zero point into the bias (bias - zp_in * sum(w), exact in
int32), which leaves a plain int8 dot product (SMLAD on the M4).

In the speed variant the hot layers (>= HOT_MACS) of FULLY_CONNECTED, CONV_2D
and DEPTHWISE_CONV_2D get kernels written into the generated file (fast_gemm,
fast_dw): weights pre-extended to int16 lane pairs in the order SXTB16 unpacks
the input, 4 output channels per pass with the accumulators in registers,
inner loops fully unrolled for the layer's literal shape, and requantisation
in two rounding multiplies (g_requant). Layers outside their preconditions
keep the tfm_kernels.h calls.
The result is bit-exact with the blob runtime and with TFLM.

The generated file exports `void tfmg_invoke(const int8_t *input, int8_t *output)`
and needs tfm_kernels.h on the include path.

    python -m node_firmware.c.codegen [--speed] model.blob model.c
"""
from __future__ import annotations

import re
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


def _pairs(name: str, w4) -> str:
    """uint32 array of int8 weights w4[..., 4] doubled into int16 lane pairs: (w[0], w[2])
    then (w[1], w[3]), matching SXTB16 of an input word and SXTB16 of it rotated by 8."""
    d = (2 * np.asarray(w4, dtype=np.int64)) & 0xFFFF
    words = np.stack([d[..., 0] | d[..., 2] << 16, d[..., 1] | d[..., 3] << 16], axis=-1).reshape(-1)
    lines = [", ".join("0x%08xu" % v for v in words[i:i + 8]) for i in range(0, len(words), 8)]
    return "static const uint32_t %s[%d] = {\n    %s\n};\n" % (name, len(words), ",\n    ".join(lines))


# Helpers of the hot-layer kernels (emitted once, only by the speed variant).
FAST_HELPERS = r"""/* Hot-layer kernels (fastN below): weights are stored doubled as int16 lane
 * pairs and the bias doubled, so the accumulators hold 2 * acc and g_requant
 * needs no shift. On the M4 the g_ helpers are single DSP instructions;
 * elsewhere they are the plain C that defines those instructions.
 * G_HOT is TFM_HOT (-O2 even in an -Os build) minus GCC's scheduling before
 * register allocation, which hoists weight loads and spills accumulators. */
#if defined(__GNUC__) && !defined(__clang__)
#define G_HOT static __attribute__((noinline, optimize("O2", "no-schedule-insns")))
#else
#define G_HOT TFM_HOT
#endif

#ifdef TFM_DSP
#define g_sxtb16(v) ((uint32_t)__sxtb16(v))
#define g_sxtb16_ror8(v) ((uint32_t)tfm_sxtb16_ror8(v))
#define g_smlad(a, b, acc) __smlad((int32_t)(a), (int32_t)(b), (acc))
#define g_smlabb(a, b, acc) __smlabb((int32_t)(a), (int32_t)(b), (acc))
#define g_smlatt(a, b, acc) __smlatt((int32_t)(a), (int32_t)(b), (acc))
#define g_ssat8(v) __ssat((v), 8)
static inline int32_t g_smmulr(int32_t a, int32_t b) /* (a * b + 2^31) >> 32 */
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline int32_t g_smmlar(int32_t a, int32_t b, int32_t c) /* c + ((a * b + 2^31) >> 32) */
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
#else
static inline int32_t g_lane(uint32_t v, int i) /* signed 16-bit lane i */
{
    uint32_t h = v >> (16 * i) & 0xffffu;
    return (int32_t)h - (int32_t)((h & 0x8000u) << 1);
}
static inline uint32_t g_sxtb16(uint32_t v) { return (v & 0x00ff00ffu) | (v & 0x00800080u) * 0x1feu; }
static inline uint32_t g_sxtb16_ror8(uint32_t v) { return g_sxtb16(v >> 8 | v << 24); }
static inline int32_t g_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(g_lane(a, 0) * g_lane(b, 0)) + (uint32_t)(g_lane(a, 1) * g_lane(b, 1)));
}
static inline int32_t g_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(g_lane(a, 0) * g_lane(b, 0)));
}
static inline int32_t g_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(g_lane(a, 1) * g_lane(b, 1)));
}
static inline int32_t g_ssat8(int32_t v) { return tfm_clamp(v, -128, 127); }
static inline int32_t g_smmulr(int32_t a, int32_t b) { return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32); }
static inline int32_t g_smmlar(int32_t a, int32_t b, int32_t c) { return c + g_smmulr(a, b); }
#endif

/* TFLM's MultiplyByQuantizedMultiplier(acc, m, -e) + zp for acc2 = 2 * acc,
 * given |acc| < 2^30 and 2 <= e <= 31 (codegen.py checks both), pe = 2^(32-e):
 *   SRDHM(acc, m) = (acc * m + 2^30) >> 31 = (acc2 * m + 2^31) >> 32 = SMMULR(acc2, m)
 *   RDBPOT(x, e)  = (x - (x < 0) + 2^(e-1)) >> e = SMMULR(x - (x < 0), pe)
 * and SMMLAR adds zp * 2^32, which leaves the rounding alone. */
static inline int32_t g_requant(int32_t acc2, int32_t m, int32_t pe, int32_t zp)
{
    int32_t x = g_smmulr(acc2, m);
    return g_smmlar(x - (int32_t)((uint32_t)x >> 31), pe, zp);
}
"""

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
        self.hot = False  # the current op gets its own -O2 function (speed variant)
        self.kernels: dict[str, str] = {}  # hot-layer kernel text (name as @) -> name
        self.own_fn = False  # the current op's call is to a hot-layer kernel

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

    def requant(self, k: int, mult_off: int, shift_off: int, m: int, bias, w):
        """Checks the multipliers; returns (tfm_requant's mode (see tfm_kernels.h), mult, shift)."""
        mult, shift = _i32(self.b, mult_off, m), _i8(self.b, shift_off, m)
        if np.any(mult == -2**31) or np.any(shift < -31) or np.any(shift > 30):
            raise ValueError("codegen: op %d has a multiplier or shift TFLM never produces" % k)
        if np.any(shift > 0):
            return 0, mult, shift
        # |acc| <= |bias| + |zp_in| * sum|w| + 128 * sum|w| before or after folding the zero point
        wabs = np.abs(np.asarray(w, dtype=np.int64)).reshape(-1)
        bound = int(np.max(np.abs(bias))) + 256 * int(wabs.sum()) if len(wabs) else 2**31
        return (2 if np.all(shift <= -1) and bound < 2**30 else 1), mult, shift

    def emit_mults(self, k: int, rq) -> int:
        """Emits the multiplier/shift arrays of requant()'s result; returns the mode."""
        mode, mult, shift = rq
        self.decls.append(_arr("int32_t", "m%d" % k, mult))
        self.decls.append(_arr("int8_t", "s%d" % k, shift))
        return mode

    def fc_like(self, k, x, y, w, bias, pc, rq, n_in, n_out, batches, zp_in, zp_out, lo, hi):
        w2 = w.reshape(n_out, n_in)
        folded = _wrap32(bias - zp_in * w2.sum(axis=1))
        if self.fast_gemm(k, x, y, w2, folded, rq, zp_out, lo, hi, ["for (p = 0; p < %d; p++)" % batches],
                          "x + p * %d" % n_in, 1, 0, n_in):
            return
        mode = self.emit_mults(k, rq)
        self.decls.append(_arr("int8_t", "w%d" % k, w))
        self.decls.append(_arr("int32_t", "b%d" % k, folded))
        fc4 = self.speed and n_in % 4 == 0 and n_out % 4 == 0 and n_in * n_out * batches >= HOT_MACS
        self.body.append("tfm_k_fc%s(%s, %s, w%d, b%d, m%d, s%d, %d, %d, %d, %d, %d, %d, %d, %d);"
                         % ("4" if fc4 else "", x, y, k, k, k, k, pc, mode, n_in, n_out, batches, zp_out, lo, hi))

    # ---- hot layers of the speed variant: kernels written into the generated file ----

    def fast_q(self, k: int, rq, bias) -> bool:
        """Emits q<k>[oc][3] = {2 * bias, multiplier, 2^(32 - e)} for g_requant, or returns
        False when the layer is not hot or its numbers are outside g_requant's
        preconditions (mode 2, i.e. |acc| < 2^30, and every shift <= -2)."""
        mode, mult, shift = rq
        if not self.hot or mode != 2 or np.any(shift > -2):
            return False
        oc = len(bias)
        mult, e = np.broadcast_to(mult, oc), -np.broadcast_to(shift, oc).astype(np.int64)
        q = np.stack([2 * np.asarray(bias, dtype=np.int64), mult, np.left_shift(1, 32 - e)], axis=1)
        self.decls.append(_arr("int32_t", "q%d" % k, q, 12))
        return True

    def fast_call(self, k: int, what: str, loops: list, xo: str, inner: list, n_ch: int, zp_out: int, lo: int,
                  hi: int, x: str, y: str) -> None:
        """Emits the kernel (once per distinct text: same-shaped layers share it) and its call.
        The kernel walks the output pixels (`loops`, input patch at `xo`), and for every
        group of 4 output channels runs `inner` with the 4 accumulators in registers."""
        ind = "    " * (len(loops) + 1)
        names = [re.match(r"for \((\w+)", loop).group(1) for loop in loops]
        names += ["o"] + [v for v in ("r", "j") if re.search(r"\b%s\b" % v, "\n".join(inner))]
        lines = ["G_HOT void @(const int8_t *x, int8_t *y, const uint32_t *w, const int32_t *qt)", "{",
                 "    int %s;" % ", ".join(names)]
        lines += ["    " * (i + 1) + loop for i, loop in enumerate(loops[:-1])]
        lines += [ind[4:] + loops[-1] + " {",
                  ind + "const int8_t *xo = %s;" % xo,
                  ind + "const uint32_t *wp = w;",
                  ind + "const int32_t *q = qt;",
                  ind + "for (o = 0; o < %d; o += 4, q += 12, y += 4) {" % n_ch,
                  ind + "    int32_t a0 = q[0], a1 = q[3], a2 = q[6], a3 = q[9];"]
        lines += [ind + "    " + line for line in inner]
        lines += [ind + "    y[%d] = %s;" % (r, self._out("a%d" % r, r, zp_out, lo, hi)) for r in range(4)]
        lines += [ind + "}", ind[4:] + "}", "}", ""]
        text = "\n".join(lines)
        if text not in self.kernels:
            self.kernels[text] = "fast%d" % len(self.kernels)
            self.decls.append("/* %s */\n" % what + text.replace("@", self.kernels[text], 1))
        self.own_fn = True
        self.body.append("%s(%s, %s, w%d, q%d); /* op %d */" % (self.kernels[text], x, y, k, k, k))

    @staticmethod
    def _out(acc: str, r: int, zp_out: int, lo: int, hi: int) -> str:
        v = "g_requant(%s, q[%d], q[%d], %d)" % (acc, 3 * r + 1, 3 * r + 2, zp_out)
        return "(int8_t)%s" % ("g_ssat8(%s)" % v if (lo, hi) == (-128, 127) else "tfm_clamp(%s, %d, %d)" % (v, lo, hi))

    def fast_gemm(self, k, x, y, w2, bias, rq, zp_out, lo, hi, loops, xo, rows, row_stride, row_bytes) -> bool:
        """FULLY_CONNECTED and CONV_2D (dilation_w 1) of a hot layer as a blocked matrix
        product: the patch of an output pixel is `rows` runs of `row_bytes` contiguous
        input bytes, `row_stride` apart from xo, dotted with the weight rows w2[o]. The
        weights are stored doubled as int16 pairs per 4 input bytes and 4 output channels,
        in the lane order SXTB16 unpacks the input word in, so 4 bytes x 4 channels take
        one LDR, 2 SXTB16 and 8 SMLAD (plus the weight loads)."""
        n_ch, n_k = w2.shape
        if n_ch % 4 or row_bytes % 4 or rows * row_bytes != n_k or not self.fast_q(k, rq, bias):
            return False
        # [group of 4 channels][input word][channel in the group][4 input bytes]
        self.decls.append(_pairs("w%d" % k, w2.reshape(n_ch // 4, 4, n_k // 4, 4).transpose(0, 2, 1, 3)))
        at = "xo + r * %d + j" % row_stride if rows > 1 else "xo + j"
        inner = ["#pragma GCC unroll 16",
                 "for (j = 0; j < %d; j += 4, wp += 8) {" % row_bytes,
                 "    uint32_t v = (uint32_t)tfm_ld32(%s);" % at,
                 "    uint32_t xe = g_sxtb16(v), xd = g_sxtb16_ror8(v);"]
        inner += ["    a%d = g_smlad(xd, wp[%d], g_smlad(xe, wp[%d], a%d));" % (r, 2 * r + 1, 2 * r, r)
                  for r in range(4)]
        inner += ["}"]
        if rows > 1:
            inner = ["#pragma GCC unroll 16", "for (r = 0; r < %d; r++) {" % rows] + ["    " + i for i in inner] + ["}"]
        what = "%d outputs per pixel, each a dot product over %d input bytes" % (n_ch, n_k)
        if rows > 1:
            what += " (%d runs of %d)" % (rows, row_bytes)
        self.fast_call(k, what, loops, xo, inner, n_ch, zp_out, lo, hi, x, y)
        return True

    def fast_dw(self, k, x, y, w, bias, rq, zp_out, lo, hi, loops, xo, kh, kw, tap_row, tap_col, cn) -> bool:
        """DEPTHWISE_CONV_2D (depth multiplier 1) of a hot layer: per tap and 4 channels one
        input word, 2 SXTB16 and 4 SMLABB/SMLATT against weights stored doubled as int16
        pairs ((c, c+2), (c+1, c+3)), tap after tap for each group of 4 channels."""
        if cn % 4 or not self.fast_q(k, rq, bias):
            return False
        # [group of 4 channels][tap][4 channels]
        self.decls.append(_pairs("w%d" % k, w.reshape(kh * kw, cn // 4, 4).transpose(1, 0, 2)))
        inner = ["#pragma GCC unroll 16",
                 "for (r = 0; r < %d; r++) {" % kh,
                 "    #pragma GCC unroll 16",
                 "    for (j = 0; j < %d; j++, wp += 2) {" % kw,
                 "        uint32_t v = (uint32_t)tfm_ld32(xo + o + r * %d + j * %d);" % (tap_row, tap_col),
                 "        uint32_t xe = g_sxtb16(v), xd = g_sxtb16_ror8(v);",
                 "        a0 = g_smlabb(xe, wp[0], a0);",
                 "        a2 = g_smlatt(xe, wp[0], a2);",
                 "        a1 = g_smlabb(xd, wp[1], a1);",
                 "        a3 = g_smlatt(xd, wp[1], a3);",
                 "    }", "}"]
        self.fast_call(k, "depthwise %dx%d over %d channels" % (kh, kw, cn), loops, xo, inner, cn, zp_out, lo, hi,
                       x, y)
        return True

    def op(self, k: int, code: int, off: int) -> None:
        n_body = len(self.body)
        self.hot = self.speed and _macs(self.b, self.hdr, self.ts, code, off) >= HOT_MACS
        self.own_fn = False
        self.op_body(k, code, off)
        if self.hot and len(self.body) > n_body and not self.own_fn:
            stmt = self.body.pop()
            self.decls.append("TFM_HOT void layer%d(int8_t *A)\n{\n    %s\n}\n" % (k, stmt))
            self.body.append("layer%d(A);" % k)

    def op_body(self, k: int, code: int, off: int) -> None:
        b, ts = self.b, self.ts
        if code == B.OP_FULLY_CONNECTED:
            inp, out, lo, hi, pc, n_in, n_out, mo, so, bo, wo = B.fc_fields(b, off)
            w, bias = _i8(b, wo, n_in * n_out), _i32(b, bo, n_out)
            rq = self.requant(k, mo, so, n_out if pc else 1, bias, w)
            self.fc_like(k, self.t(inp), self.t(out), w, bias, pc, rq, n_in,
                         n_out, self.n(inp) // n_in if n_in else 0, ts[inp][2], ts[out][2], lo, hi)
        elif code in (B.OP_CONV_2D, B.OP_DEPTHWISE_CONV_2D):
            (inp, out, lo, hi, sh, sw, dh, dw, pt, pl, kh, kw, pc, dm, oc, mo, so, bo, wo, _) = \
                B.conv_fields(b, self.hdr, off)
            n, ih, iw, ic = ts[inp][1]
            _, oh, ow, _ = ts[out][1]
            dw_ = code == B.OP_DEPTHWISE_CONV_2D
            nw = kh * kw * oc * (1 if dw_ else ic)
            w, bias = _i8(b, wo, nw), _i32(b, bo, oc)
            rq = self.requant(k, mo, so, oc if pc else 1, bias, w)
            if not dw_ and kh == kw == sh == sw == 1 and pt == pl == 0 and (oh, ow) == (ih, iw):
                self.fc_like(k, self.t(inp), self.t(out), w, bias, pc, rq, ic, oc, n * ih * iw, ts[inp][2],
                             ts[out][2], lo, hi)
                return
            # Pad the input into a zero-point frame large enough for every tap,
            # fold -zp_in * sum(w) into the bias: no bounds checks, plain dot products.
            ph = max(pt + ih, (oh - 1) * sh + (kh - 1) * dh + 1)
            pw = max(pl + iw, (ow - 1) * sw + (kw - 1) * dw + 1)
            zp_in = ts[inp][2]
            wsum = w.reshape(kh * kw, oc).sum(axis=0) if dw_ else w.reshape(oc, -1).sum(axis=1)
            folded = _wrap32(bias - zp_in * wsum)
            x = self.t(inp)
            if (ph, pw, pt, pl) != (ih, iw, 0, 0):
                self.pad = max(self.pad, n * ph * pw * ic)
                self.body.append("tfm_k_pad(%s, P, %d, %d, %d, %d, %d, %d, %d, %d, %d);"
                                 % (x, n, ih, iw, ic, pt, pl, ph, pw, zp_in))
                x = "P"
            loops = ["for (oy = 0; oy < %d; oy++)" % oh, "for (ox = 0; ox < %d; ox++)" % ow]
            xo = "x + oy * %d + ox * %d" % (sh * pw * ic, sw * ic)
            if n > 1:
                loops, xo = ["for (b = 0; b < %d; b++)" % n] + loops, "%s + b * %d" % (xo, ph * pw * ic)
            if dw_ and dm == 1 and self.fast_dw(k, x, self.t(out), w, folded, rq, ts[out][2], lo, hi, loops, xo,
                                                 kh, kw, dh * pw * ic, dw * ic, ic):
                return
            if not dw_ and dw == 1 and self.fast_gemm(k, x, self.t(out), w.reshape(oc, -1), folded, rq, ts[out][2],
                                                      lo, hi, loops, xo, kh, dh * pw * ic, kw * ic):
                return
            mode = self.emit_mults(k, rq)
            self.decls.append(_arr("int8_t", "w%d" % k, w))
            self.decls.append(_arr("int32_t", "b%d" % k, folded))
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
        if self.kernels:
            lines += ["", FAST_HELPERS.rstrip("\n")]
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
