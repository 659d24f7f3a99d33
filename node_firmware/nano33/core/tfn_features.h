/* On-device features, the C twin of node_firmware/micropython/features.py
 * (which defines them). float32 arithmetic for the M4F's single-precision FPU. */
#ifndef TFN_FEATURES_H
#define TFN_FEATURES_H

#define TFN_RATE_HZ 1000
#define TFN_WINDOW 256
#define TFN_N_VIBRATION 24
#define TFN_N_WEATHER 6

/* 8 features of one axis: ln RMS, ln crest, ln kurtosis, ln MAD, 4 log band energies. */
void tfn_axis_features(const float x[TFN_WINDOW], float out[8]);
/* 24 features, axis-major (x, y, z). */
void tfn_vibration_features(const float *ax, const float *ay, const float *az,
                            float out[TFN_N_VIBRATION]);
/* temperature, humidity, pressure, 3 h pressure trend, hour of day (sin, cos). */
void tfn_weather_features(float temp_c, float humidity_pct, float pressure_hpa,
                          float pressure_3h_ago_hpa, float hour, float out[TFN_N_WEATHER]);

#endif
