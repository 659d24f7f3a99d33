/* Same arithmetic order as features.py; float32 instead of double, so values
 * agree within 1e-4 (measured 1.7e-6; tests/node/test_nano33_features.py). */
#include "tfn_features.h"

#include <math.h>

#define EPS 1e-6f
static const int bands[4][2] = {{1, 13}, {13, 39}, {39, 77}, {77, 129}};

static float re_buf[TFN_WINDOW], im_buf[TFN_WINDOW];
static float cos_t[TFN_WINDOW / 2], sin_t[TFN_WINDOW / 2];
static int tw_ready;

static void twiddles(void)
{
    int k;
    const double pi = 3.14159265358979323846;
    for (k = 0; k < TFN_WINDOW / 2; k++) {
        cos_t[k] = (float)cos(-2.0 * pi * k / TFN_WINDOW);
        sin_t[k] = (float)sin(-2.0 * pi * k / TFN_WINDOW);
    }
    tw_ready = 1;
}

/* |X_k|^2 / N^2 into re_buf[0..N/2] (iterative radix-2 FFT of a real sequence). */
static void power_spectrum(const float *x)
{
    int i, bits = 0, size;
    const float nn = (float)TFN_WINDOW * (float)TFN_WINDOW;
    if (!tw_ready) twiddles();
    while ((1 << bits) < TFN_WINDOW) bits++;
    for (i = 0; i < TFN_WINDOW; i++) {
        int r = 0, v = i, b;
        for (b = 0; b < bits; b++) {
            r = (r << 1) | (v & 1);
            v >>= 1;
        }
        re_buf[r] = x[i];
        im_buf[r] = 0.0f;
    }
    for (size = 2; size <= TFN_WINDOW; size *= 2) {
        int half = size / 2, step = TFN_WINDOW / size, start;
        for (start = 0; start < TFN_WINDOW; start += size) {
            int j, k = 0;
            for (j = start; j < start + half; j++) {
                float c = cos_t[k], s = sin_t[k];
                int a = j + half;
                float tr = re_buf[a] * c - im_buf[a] * s;
                float ti = re_buf[a] * s + im_buf[a] * c;
                re_buf[a] = re_buf[j] - tr;
                im_buf[a] = im_buf[j] - ti;
                re_buf[j] += tr;
                im_buf[j] += ti;
                k += step;
            }
        }
    }
    for (i = 0; i <= TFN_WINDOW / 2; i++)
        re_buf[i] = (re_buf[i] * re_buf[i] + im_buf[i] * im_buf[i]) / nn;
}

void tfn_axis_features(const float x[TFN_WINDOW], float out[8])
{
    static float d[TFN_WINDOW];
    /* the mean in double: a still board must give exactly zero deviations, as in features.py */
    double mean = 0.0;
    float m2 = 0.0f, m4 = 0.0f, peak = 0.0f, mad = 0.0f, rms;
    int i, b;
    for (i = 0; i < TFN_WINDOW; i++) mean += x[i];
    mean /= TFN_WINDOW;
    for (i = 0; i < TFN_WINDOW; i++) {
        float v = (float)(x[i] - mean), a = fabsf(v);
        d[i] = v;
        m2 += v * v;
        m4 += v * v * v * v;
        mad += a;
        if (a > peak) peak = a;
    }
    m2 /= TFN_WINDOW;
    m4 /= TFN_WINDOW;
    mad /= TFN_WINDOW;
    rms = sqrtf(m2);
    out[0] = logf(rms + EPS);
    out[1] = logf((peak + EPS) / (rms + EPS));
    out[2] = logf((m4 + EPS * EPS) / (m2 * m2 + EPS * EPS));
    out[3] = logf(mad + EPS);
    power_spectrum(d);
    for (b = 0; b < 4; b++) {
        float s = 0.0f;
        for (i = bands[b][0]; i < bands[b][1]; i++) s += re_buf[i];
        out[4 + b] = 0.5f * (logf(s + EPS) + 5.0f);
    }
}

void tfn_vibration_features(const float *ax, const float *ay, const float *az,
                            float out[TFN_N_VIBRATION])
{
    tfn_axis_features(ax, out);
    tfn_axis_features(ay, out + 8);
    tfn_axis_features(az, out + 16);
}

void tfn_weather_features(float temp_c, float humidity_pct, float pressure_hpa,
                          float pressure_3h_ago_hpa, float hour, float out[TFN_N_WEATHER])
{
    float a = 2.0f * 3.14159265f * fmodf(hour, 24.0f) / 24.0f;
    if (a < 0.0f) a += 2.0f * 3.14159265f;
    out[0] = (temp_c - 15.0f) / 10.0f;
    out[1] = (humidity_pct - 65.0f) / 15.0f;
    out[2] = (pressure_hpa - 1013.0f) / 10.0f;
    out[3] = (pressure_hpa - pressure_3h_ago_hpa) / 2.0f;
    out[4] = sinf(a);
    out[5] = cosf(a);
}
