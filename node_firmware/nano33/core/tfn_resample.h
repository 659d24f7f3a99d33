/* Band-limited resampling of a uniformly sampled signal, so a sensor running at
 * its own output data rate (LSM9DS1: 952 Hz, BMI270: 800 Hz) yields the
 * TFN_RATE_HZ windows the vibration features are defined at.
 *
 * Windowed sinc (Hann window), cutoff 0.45 * min(rate_in, rate_out), kernel
 * half-width h = ceil(16 * rate_in / min(rate_in, rate_out)) input samples, gain
 * normalised to 1 at DC for every output sample. float32, no heap.
 * Measured (tests/node/test_nano33_resample.py, 952, 800 and 1600 Hz to 1 kHz):
 * tones up to 0.40 of the lower rate keep their amplitude within 0.7 %; the
 * -6 dB point is at 0.45; aliases from 0.50 of the lower rate on (downsampling)
 * are attenuated by more than 40 dB, upsampling images by more than 55 dB.
 * Cost: 2h multiply-adds per output sample (32 at 952 Hz), no trigonometry in
 * the inner loop.
 */
#ifndef TFN_RESAMPLE_H
#define TFN_RESAMPLE_H

#define TFN_RESAMPLE_MAX_HALF 64

/* Input samples that n_out outputs need, or -1 for bad arguments. */
int tfn_resample_need(float rate_in, float rate_out, int n_out);

/* out[j] is the band-limited input at h + j * rate_in / rate_out input samples
 * (h the kernel half-width; with equal rates out is a copy of in). The input must
 * hold tfn_resample_need(...) samples. 0, or -1 for bad arguments / short input. */
int tfn_resample(const float *in, int n_in, float rate_in, float *out, int n_out, float rate_out);

#endif
