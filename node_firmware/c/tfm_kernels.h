/* TinyFleet int8 math and kernels as static inline functions: the fixed-point
 * helpers are shared by tfm_runtime.c and by code from codegen.py, whose calls
 * pass literal shapes and constants so the compiler folds and specialises them.
 * Integer math is TFLM's (gemmlowp SRDHM + RoundingDivideByPOT, double rounding).
 * C99; with __ARM_FEATURE_DSP the dot product uses SMLAD on 2x16-bit lanes. */
#ifndef TFM_KERNELS_H
#define TFM_KERNELS_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define TFM_DSP 1
#endif

/* Generated code defines TFM_SPEED to inline every kernel call (constants
 * folded per layer: faster, larger); otherwise the compiler decides (-Os). */
#if defined(TFM_SPEED) && defined(__GNUC__)
#define TFM_INLINE static inline __attribute__((always_inline))
#else
#define TFM_INLINE static inline
#endif
/* A heavy layer gets its own function built at -O2 even in an -Os build:
 * GCC's -Os register allocation spills the SIMD accumulators. */
#if defined(TFM_SPEED) && defined(__GNUC__) && !defined(__clang__)
#define TFM_HOT static __attribute__((noinline, optimize("O2")))
#else
#define TFM_HOT static
#endif

/* ---- TFLM / gemmlowp fixed point ---- */

TFM_INLINE int32_t tfm_srdhm(int32_t a, int32_t b)
{
    /* (a*b + nudge) / 2^31 truncated == floor((a*b + 2^30) / 2^31) for both signs */
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    return (int32_t)(((int64_t)a * b + (1 << 30)) >> 31);
}

TFM_INLINE int32_t tfm_rdbpot(int32_t x, int e)
{
    int32_t mask, thr;
    if (e > 31) e = 31;
    mask = (int32_t)((1u << e) - 1u);
    thr = (mask >> 1) + (x < 0);
    return (x >> e) + ((x & mask) > thr);
}

/* TFLM MultiplyByQuantizedMultiplier: shift > 0 is a left shift. */
TFM_INLINE int32_t tfm_mbqm(int32_t x, int32_t m, int s)
{
    return tfm_rdbpot(tfm_srdhm((int32_t)((uint32_t)x << (s > 0 ? s & 31 : 0)), m), s > 0 ? 0 : -s);
}

/* Output requantisation for what codegen.py verified: multipliers != INT32_MIN
 * (TFLM's are 0 or in [2^30, 2^31), so SRDHM cannot saturate) and shifts in
 * [-31, 30]. mode 0: any shift; 1: every shift <= 0; 2: every shift <= -1 and
 * |acc| < 2^30 proven from the weights, so RDBPOT becomes one rounding add
 * (x + 2^(e-1) - (x < 0)) >> e, which equals gemmlowp's when it cannot overflow. */
TFM_INLINE int32_t tfm_requant(int32_t acc, int32_t m, int s, int mode)
{
    int32_t mask, thr;
    if (!mode && s > 0) acc = (int32_t)((uint32_t)acc << s);
    acc = (int32_t)(((int64_t)acc * m + (1 << 30)) >> 31);
    if (!mode && s > 0) return acc;
    if (mode == 2) return (acc + (int32_t)((1u << -s) >> 1) - (acc < 0)) >> -s;
    mask = (int32_t)((1u << -s) - 1u);
    thr = (mask >> 1) + (acc < 0);
    return (acc >> -s) + ((acc & mask) > thr);
}

TFM_INLINE int32_t tfm_clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* clamp to [lo, hi] within int8: one SSAT on the M4, and the compares fold
 * away when lo/hi are the int8 limits (no fused activation) */
TFM_INLINE int8_t tfm_out8(int32_t v, int32_t lo, int32_t hi)
{
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT && defined(TFM_DSP)
    v = __ssat(v, 8);
#endif
    return (int8_t)tfm_clamp(v, lo, hi);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT for e > 0 */
TFM_INLINE int32_t tfm_sat_pot(int32_t x, int e)
{
    int32_t thr = (int32_t)((1u << (31 - e)) - 1u);
    if (x > thr) return INT32_MAX;
    if (x < -thr) return INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1, Q0.31 in and out */
TFM_INLINE int32_t tfm_one_over_one_plus_x(int32_t a)
{
    int32_t half = (int32_t)(((int64_t)a + INT32_MAX + 1) / 2); /* RoundingHalfSum(a, One) */
    int32_t x = 1515870810 + tfm_srdhm(half, -1010580540);   /* 48/17 - 32/17 * half */
    int i;
    for (i = 0; i < 3; i++) x += tfm_sat_pot(tfm_srdhm(x, (1 << 29) - tfm_srdhm(half, x)), 2);
    return tfm_sat_pot(x, 1);
}

TFM_INLINE int tfm_clz(uint32_t x)
{
#if defined(__GNUC__)
    return x ? __builtin_clz(x) : 32;
#else
    int n = 0;
    while (n < 32 && !(x & 0x80000000u)) { x <<= 1; n++; }
    return n;
#endif
}

TFM_INLINE int32_t tfm_ld32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- kernels for generated code ---- */



#ifdef TFM_DSP
TFM_INLINE uint32_t tfm_sxtb16_ror8(uint32_t v) /* GCC 12 does not fold the rotation itself */
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}
#endif

/* acc + sum x[i] * w[i]: 4 MACs per two SMLADs on the M4 */
TFM_INLINE int32_t tfm_dot(const int8_t *x, const int8_t *w, int n, int32_t acc)
{
#ifdef TFM_DSP
    for (; n >= 4; n -= 4, x += 4, w += 4) {
        uint32_t a = (uint32_t)tfm_ld32(x), b = (uint32_t)tfm_ld32(w);
        acc = __smlad(__sxtb16(a), __sxtb16(b), acc);
        acc = __smlad(tfm_sxtb16_ror8(a), tfm_sxtb16_ror8(b), acc);
    }
#endif
    for (; n > 0; n--) acc += *x++ * *w++;
    return acc;
}

/* FULLY_CONNECTED and 1x1/stride-1 CONV_2D: bias already holds -zp_in * sum(w). */
TFM_INLINE void tfm_k_fc(const int8_t *x, int8_t *y, const int8_t *w, const int32_t *bias,
                            const int32_t *mult, const int8_t *shift, int per_channel, int mode,
                            int n_in, int n_out, int batches, int zp_out, int lo, int hi)
{
    int b, o;
    for (b = 0; b < batches; b++, x += n_in)
        for (o = 0; o < n_out; o++) {
            int k = per_channel ? o : 0;
            int32_t acc = tfm_dot(x, w + o * n_in, n_in, bias[o]);
            *y++ = tfm_out8(tfm_requant(acc, mult[k], shift[k], mode) + zp_out, lo, hi);
        }
}

/* tfm_k_fc for n_in and n_out multiples of 4: four output rows at once, so
 * each input word is loaded and sign-extended once for four SMLAD pairs. */
TFM_INLINE void tfm_k_fc4(const int8_t *x, int8_t *y, const int8_t *w, const int32_t *bias,
                          const int32_t *mult, const int8_t *shift, int per_channel, int mode,
                          int n_in, int n_out, int batches, int zp_out, int lo, int hi)
{
    int b, o, i;
    for (b = 0; b < batches; b++, x += n_in)
        for (o = 0; o < n_out; o += 4, y += 4) {
            const int8_t *w0 = w + o * n_in;
            int32_t a0 = bias[o], a1 = bias[o + 1], a2 = bias[o + 2], a3 = bias[o + 3];
            for (i = 0; i < n_in; i += 4) {
#ifdef TFM_DSP
                uint32_t xv = (uint32_t)tfm_ld32(x + i), v;
                int16x2_t xe = __sxtb16(xv), xd = tfm_sxtb16_ror8(xv);
                v = (uint32_t)tfm_ld32(w0 + i);
                a0 = __smlad(xd, tfm_sxtb16_ror8(v), __smlad(xe, __sxtb16(v), a0));
                v = (uint32_t)tfm_ld32(w0 + n_in + i);
                a1 = __smlad(xd, tfm_sxtb16_ror8(v), __smlad(xe, __sxtb16(v), a1));
                v = (uint32_t)tfm_ld32(w0 + 2 * n_in + i);
                a2 = __smlad(xd, tfm_sxtb16_ror8(v), __smlad(xe, __sxtb16(v), a2));
                v = (uint32_t)tfm_ld32(w0 + 3 * n_in + i);
                a3 = __smlad(xd, tfm_sxtb16_ror8(v), __smlad(xe, __sxtb16(v), a3));
#else
                a0 = tfm_dot(x + i, w0 + i, 4, a0);
                a1 = tfm_dot(x + i, w0 + n_in + i, 4, a1);
                a2 = tfm_dot(x + i, w0 + 2 * n_in + i, 4, a2);
                a3 = tfm_dot(x + i, w0 + 3 * n_in + i, 4, a3);
#endif
            }
            y[0] = tfm_out8(tfm_requant(a0, mult[per_channel ? o : 0], shift[per_channel ? o : 0], mode)
                            + zp_out, lo, hi);
            y[1] = tfm_out8(tfm_requant(a1, mult[per_channel ? o + 1 : 0], shift[per_channel ? o + 1 : 0],
                                        mode) + zp_out, lo, hi);
            y[2] = tfm_out8(tfm_requant(a2, mult[per_channel ? o + 2 : 0], shift[per_channel ? o + 2 : 0],
                                        mode) + zp_out, lo, hi);
            y[3] = tfm_out8(tfm_requant(a3, mult[per_channel ? o + 3 : 0], shift[per_channel ? o + 3 : 0],
                                        mode) + zp_out, lo, hi);
        }
}

/* Copies an NHWC input into a (ph x pw) frame filled with the input zero
 * point, at row pt / column pl: out-of-bounds taps then read zp and contribute
 * (zp - zp) * w = 0, exactly TFLM's skipped taps, with no bounds checks. */
TFM_INLINE void tfm_k_pad(const int8_t *x, int8_t *xp, int n, int ih, int iw, int ic, int pt, int pl,
                          int ph, int pw, int zp)
{
    int b, r;
    memset(xp, zp, (size_t)(n * ph * pw * ic));
    for (b = 0; b < n; b++)
        for (r = 0; r < ih; r++)
            memcpy(xp + ((b * ph + pt + r) * pw + pl) * ic, x + (b * ih + r) * iw * ic, (size_t)(iw * ic));
}

/* CONV_2D (dm == 0) / DEPTHWISE_CONV_2D (dm > 0) over a padded frame (ph x pw);
 * bias holds -zp_in * sum(w), so the sums are plain int8 dot products. */
TFM_INLINE void tfm_k_conv_p(const int8_t *x, int8_t *y, const int8_t *w, const int32_t *bias,
                             const int32_t *mult, const int8_t *shift, int per_channel, int mode,
                             int n, int ph, int pw, int ic, int oh, int ow, int oc, int kh, int kw, int sh,
                             int sw, int dh, int dw, int dm, int zp_out, int lo, int hi)
{
    int b, oy, ox, c, ky, kx;
    for (b = 0; b < n; b++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                const int8_t *xo = x + ((b * ph + oy * sh) * pw + ox * sw) * ic;
                for (c = 0; c < oc; c++) {
                    int32_t acc = bias[c];
                    int k = per_channel ? c : 0;
                    for (ky = 0; ky < kh; ky++) {
                        const int8_t *xr = xo + ky * dh * pw * ic;
                        if (dm) {
                            const int8_t *wr = w + ky * kw * oc + c;
                            for (kx = 0; kx < kw; kx++) acc += xr[kx * dw * ic + c / dm] * wr[kx * oc];
                        } else if (dw == 1) {
                            acc = tfm_dot(xr, w + (c * kh + ky) * kw * ic, kw * ic, acc);
                        } else {
                            for (kx = 0; kx < kw; kx++)
                                acc = tfm_dot(xr + kx * dw * ic, w + ((c * kh + ky) * kw + kx) * ic, ic, acc);
                        }
                    }
                    *y++ = tfm_out8(tfm_requant(acc, mult[k], shift[k], mode) + zp_out, lo, hi);
                }
            }
}

/* CONV_2D over a padded frame with dilation_w 1: each output pixel's patch
 * (kh rows of kw*ic bytes) is gathered once into col, then every output
 * channel is one contiguous dot product (SMLAD on the M4). */
TFM_INLINE void tfm_k_conv_col(const int8_t *x, int8_t *y, int8_t *col, const int8_t *w, const int32_t *bias,
                               const int32_t *mult, const int8_t *shift, int per_channel, int mode,
                               int n, int ph, int pw, int ic, int oh, int ow, int oc, int kh, int kw, int sh,
                               int sw, int dh, int zp_out, int lo, int hi)
{
    int b, oy, ox, c, ky, len = kh * kw * ic;
    for (b = 0; b < n; b++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                const int8_t *xo = x + ((b * ph + oy * sh) * pw + ox * sw) * ic;
                const int8_t *wc = w;
                for (ky = 0; ky < kh; ky++) memcpy(col + ky * kw * ic, xo + ky * dh * pw * ic, (size_t)(kw * ic));
                if (len % 4 == 0 && oc % 4 == 0) {
                    tfm_k_fc4(col, y, w, bias, mult, shift, per_channel, mode, len, oc, 1, zp_out, lo, hi);
                    y += oc;
                    continue;
                }
                for (c = 0; c < oc; c++, wc += len) {
                    int k = per_channel ? c : 0;
                    int32_t acc = tfm_dot(col, wc, len, bias[c]);
                    *y++ = tfm_out8(tfm_requant(acc, mult[k], shift[k], mode) + zp_out, lo, hi);
                }
            }
}

/* DEPTHWISE_CONV_2D, depth multiplier 1, channels a multiple of 4, over a
 * padded frame: four channels' accumulators stay in registers across all
 * taps (SMLABB/SMLATT on the M4). */
TFM_INLINE void tfm_k_dw4(const int8_t *x, int8_t *y, const int8_t *w, const int32_t *bias,
                          const int32_t *mult, const int8_t *shift, int per_channel, int mode, int n,
                          int ph, int pw, int cn, int oh, int ow, int kh, int kw, int sh, int sw, int dh, int dw,
                          int zp_out, int lo, int hi)
{
    int b, oy, ox, c, ky, kx;
    for (b = 0; b < n; b++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                const int8_t *xo = x + ((b * ph + oy * sh) * pw + ox * sw) * cn;
                for (c = 0; c < cn; c += 4) {
                    /* four scalars, not an array: GCC then keeps them in registers */
                    int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                    for (ky = 0; ky < kh; ky++)
                        for (kx = 0; kx < kw; kx++) {
                            const int8_t *xp = xo + (ky * dh * pw + kx * dw) * cn + c;
                            const int8_t *wp = w + (ky * kw + kx) * cn + c;
#ifdef TFM_DSP
                            uint32_t xv = (uint32_t)tfm_ld32(xp), wv = (uint32_t)tfm_ld32(wp);
                            int32_t xe = (int32_t)__sxtb16(xv), we = (int32_t)__sxtb16(wv);
                            int32_t xd = (int32_t)tfm_sxtb16_ror8(xv), wd = (int32_t)tfm_sxtb16_ror8(wv);
                            a0 = __smlabb(xe, we, a0);
                            a2 = __smlatt(xe, we, a2);
                            a1 = __smlabb(xd, wd, a1);
                            a3 = __smlatt(xd, wd, a3);
#else
                            a0 += xp[0] * wp[0];
                            a1 += xp[1] * wp[1];
                            a2 += xp[2] * wp[2];
                            a3 += xp[3] * wp[3];
#endif
                        }
                    y[c] = tfm_out8(tfm_requant(a0, mult[per_channel ? c : 0], shift[per_channel ? c : 0],
                                                mode) + zp_out, lo, hi);
                    y[c + 1] = tfm_out8(tfm_requant(a1, mult[per_channel ? c + 1 : 0],
                                                    shift[per_channel ? c + 1 : 0], mode) + zp_out, lo, hi);
                    y[c + 2] = tfm_out8(tfm_requant(a2, mult[per_channel ? c + 2 : 0],
                                                    shift[per_channel ? c + 2 : 0], mode) + zp_out, lo, hi);
                    y[c + 3] = tfm_out8(tfm_requant(a3, mult[per_channel ? c + 3 : 0],
                                                    shift[per_channel ? c + 3 : 0], mode) + zp_out, lo, hi);
                }
                y += cn;
            }
}

/* AVERAGE_POOL_2D (is_max 0) and MAX_POOL_2D (is_max 1) */
TFM_INLINE void tfm_k_pool(const int8_t *x, int8_t *y, int is_max, int n, int ih, int iw, int c_n,
                              int oh, int ow, int fh, int fw, int sh, int sw, int pt, int pl, int lo,
                              int hi)
{
    int b, oy, ox, c, ky, kx;
    for (b = 0; b < n; b++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++)
                for (c = 0; c < c_n; c++) {
                    int32_t acc = is_max ? -128 : 0, cnt = 0;
                    for (ky = 0; ky < fh; ky++) {
                        int iy = oy * sh + ky - pt;
                        if (iy < 0 || iy >= ih) continue;
                        for (kx = 0; kx < fw; kx++) {
                            int ix = ox * sw + kx - pl;
                            int32_t v;
                            if (ix < 0 || ix >= iw) continue;
                            v = x[((b * ih + iy) * iw + ix) * c_n + c];
                            cnt++;
                            if (!is_max) acc += v;
                            else if (v > acc) acc = v;
                        }
                    }
                    if (!is_max)
                        acc = cnt == 0 ? 0 : acc > 0 ? (acc + cnt / 2) / cnt : (acc - cnt / 2) / cnt;
                    *y++ = (int8_t)tfm_clamp(acc, lo, hi);
                }
}

TFM_INLINE void tfm_k_lut(const int8_t *x, int8_t *y, const int8_t *lut, int n)
{
    int i;
    for (i = 0; i < n; i++) y[i] = lut[x[i] + 128];
}

TFM_INLINE void tfm_k_quantize(const int8_t *x, int8_t *y, int n, int zp_in, int32_t m, int s,
                                  int zp_out)
{
    int i;
    for (i = 0; i < n; i++) y[i] = (int8_t)tfm_clamp(tfm_mbqm(x[i] - zp_in, m, s) + zp_out, -128, 127);
}

/* SOFTMAX over the last dimension; exp_lut as in docs/model-blob.md. */
TFM_INLINE void tfm_k_softmax(const int8_t *x, int8_t *y, const int32_t *exp_lut, int rows, int depth)
{
    int r, c;
    for (r = 0; r < rows; r++, x += depth, y += depth) {
        int32_t mx = -128, sum = 0, scale;
        int lz;
        for (c = 0; c < depth; c++)
            if (x[c] > mx) mx = x[c];
        for (c = 0; c < depth; c++) sum += tfm_rdbpot(exp_lut[mx - x[c]], 12);
        lz = tfm_clz((uint32_t)sum);
        scale = tfm_one_over_one_plus_x((int32_t)(((uint32_t)sum << (lz & 31)) - 0x80000000u));
        for (c = 0; c < depth; c++)
            y[c] = (int8_t)tfm_clamp(tfm_rdbpot(tfm_srdhm(scale, exp_lut[mx - x[c]]), 35 - lz) - 128, -128, 127);
    }
}

/* ADD with 4-D broadcasting; s1/s2 are the input strides (0 on a broadcast dim). */
TFM_INLINE void tfm_k_add(const int8_t *x1, const int8_t *x2, int8_t *y, const int *od,
                             const int *s1, const int *s2, int zp1, int zp2, int ls, int32_t m1,
                             int sh1, int32_t m2, int sh2, int32_t mo, int sho, int zpo, int lo,
                             int hi)
{
    int i0, i1, i2, i3;
    for (i0 = 0; i0 < od[0]; i0++)
        for (i1 = 0; i1 < od[1]; i1++)
            for (i2 = 0; i2 < od[2]; i2++)
                for (i3 = 0; i3 < od[3]; i3++) {
                    int32_t a = x1[i0 * s1[0] + i1 * s1[1] + i2 * s1[2] + i3 * s1[3]] - zp1;
                    int32_t b = x2[i0 * s2[0] + i1 * s2[1] + i2 * s2[2] + i3 * s2[3]] - zp2;
                    a = tfm_mbqm((int32_t)((uint32_t)a << ls), m1, sh1);
                    b = tfm_mbqm((int32_t)((uint32_t)b << ls), m2, sh2);
                    *y++ = (int8_t)tfm_clamp(tfm_mbqm(a + b, mo, sho) + zpo, lo, hi);
                }
}

/* Sum over the reduced dims for every kept position; dims/strides are 4-D,
 * `kept` has 1 on reduced dims, `red` has 1 on kept dims. Writes int32 sums. */
TFM_INLINE void tfm_k_sums(const int8_t *x, int32_t *sums, const int *kept, const int *red,
                              const int *stride)
{
    int k0, k1, k2, k3, r0, r1, r2, r3;
    for (k0 = 0; k0 < kept[0]; k0++)
        for (k1 = 0; k1 < kept[1]; k1++)
            for (k2 = 0; k2 < kept[2]; k2++)
                for (k3 = 0; k3 < kept[3]; k3++) {
                    uint32_t s = 0;
                    for (r0 = 0; r0 < red[0]; r0++)
                        for (r1 = 0; r1 < red[1]; r1++)
                            for (r2 = 0; r2 < red[2]; r2++)
                                for (r3 = 0; r3 < red[3]; r3++)
                                    s += (uint32_t)(int32_t)x[(k0 + r0) * stride[0] + (k1 + r1) * stride[1] +
                                                              (k2 + r2) * stride[2] + (k3 + r3) * stride[3]];
                    *sums++ = (int32_t)s;
                }
}

#endif
