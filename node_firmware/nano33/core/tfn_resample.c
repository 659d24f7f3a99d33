#include "tfn_resample.h"

#include <math.h>
#include <string.h>

#define PI_F 3.14159265358979f
#define CUTOFF 0.45f /* of the lower of the two rates */

static int half_width(float rate_in, float rate_out)
{
    float lo = rate_in < rate_out ? rate_in : rate_out;
    int h = (int)ceilf(16.0f * rate_in / lo);
    return h > TFN_RESAMPLE_MAX_HALF ? TFN_RESAMPLE_MAX_HALF : h;
}

int tfn_resample_need(float rate_in, float rate_out, int n_out)
{
    int h;
    if (!(rate_in > 0.0f) || !(rate_out > 0.0f) || n_out < 1) return -1;
    if (rate_in == rate_out) return n_out;
    h = half_width(rate_in, rate_out);
    /* the last output sits at h + (n_out - 1) * step; its taps reach h input samples further */
    return 2 * h + 1 + (int)ceilf((float)(n_out - 1) * (rate_in / rate_out));
}

int tfn_resample(const float *in, int n_in, float rate_in, float *out, int n_out, float rate_out)
{
    int need = tfn_resample_need(rate_in, rate_out, n_out), h, j, m;
    float step, fc, lo, ca, sa, cb, sb;
    if (need < 0 || n_in < need || !in || !out) return -1;
    if (rate_in == rate_out) {
        memcpy(out, in, (size_t)n_out * sizeof *out);
        return 0;
    }
    h = half_width(rate_in, rate_out);
    step = rate_in / rate_out;
    lo = rate_in < rate_out ? rate_in : rate_out;
    fc = CUTOFF * lo / rate_in; /* cycles per input sample */
    /* per tap the sinc angle drops by 2 pi fc and the Hann angle by pi / h: rotations */
    ca = cosf(2.0f * PI_F * fc);
    sa = sinf(2.0f * PI_F * fc);
    cb = cosf(PI_F / (float)h);
    sb = sinf(PI_F / (float)h);
    for (j = 0; j < n_out; j++) {
        float pos = (float)j * step, fl = floorf(pos);
        int base = (int)fl + h;                 /* floor of the output's position */
        float d = (pos - fl) + (float)(h - 1);  /* distance to the first tap, in (h-1, h] */
        const float *x = in + base - h + 1;     /* taps base-h+1 .. base+h */
        float s = sinf(2.0f * PI_F * fc * d), c = cosf(2.0f * PI_F * fc * d);
        float sw = sinf(PI_F * d / (float)h), cw = cosf(PI_F * d / (float)h);
        float acc = 0.0f, norm = 0.0f;
        for (m = 0; m < 2 * h; m++) {
            float k, t;
            if (d > 1e-4f || d < -1e-4f) k = s / (PI_F * d);
            else k = 2.0f * fc;
            k *= 0.5f * (1.0f + cw);
            acc += k * x[m];
            norm += k;
            /* d -= 1: rotate both angles back by one tap */
            t = s * ca - c * sa;
            c = c * ca + s * sa;
            s = t;
            t = sw * cb - cw * sb;
            cw = cw * cb + sw * sb;
            sw = t;
            d -= 1.0f;
        }
        out[j] = acc / norm;
    }
    return 0;
}
