"""On-device features, exactly as the anomaly and weather models expect them.

MicroPython-safe: math only, no numpy, no typing at run time. The numpy twin used
for training is training/features.py; tests/training checks they agree.

Vibration: a window is WINDOW samples per axis at RATE_HZ (3 lists of floats, g).
Per axis, after removing the mean: ln RMS, ln crest, ln kurtosis, ln MAD and four
log band energies from a radix-2 FFT, 8 values per axis, axis-major (x, y, z).
Weather: temperature, humidity, pressure, 3 h pressure trend and hour of day,
scaled to roughly [-3, 3] so one int8 input scale fits all of them.
Keyword: the 49x40 log-mel of one second of 16 kHz audio (`LogMel`); the numpy
twin is `log_mel` in training/datasets/keyword.py (tests/node/test_esp32_keyword.py).
Iris: the four measurements in cm, centred and scaled like training/datasets/iris.py.
"""
import math
from array import array

RATE_HZ = 1000
WINDOW = 256
BANDS = ((1, 13), (13, 39), (39, 77), (77, 129))  # FFT bins [lo, hi): ~4-47, 51-148, 152-297, 301-500 Hz
N_VIBRATION = 24
N_WEATHER = 6
EPS = 1e-6

_TW = None


def _twiddles():
    global _TW
    if _TW is None:
        _TW = ([math.cos(-2 * math.pi * k / WINDOW) for k in range(WINDOW // 2)],
               [math.sin(-2 * math.pi * k / WINDOW) for k in range(WINDOW // 2)])
    return _TW


def _butterflies(re, im, n, cos_t, sin_t):
    """The radix-2 stages of an n-point FFT, in place, on input already in bit-reversed
    order; cos_t/sin_t hold cos and sin of -2*pi*k/n for k < n/2."""
    size = 2
    while size <= n:
        half = size // 2
        step = n // size
        for start in range(0, n, size):
            k = 0
            for j in range(start, start + half):
                c = cos_t[k]
                s = sin_t[k]
                a = j + half
                tr = re[a] * c - im[a] * s
                ti = re[a] * s + im[a] * c
                re[a] = re[j] - tr
                im[a] = im[j] - ti
                re[j] += tr
                im[j] += ti
                k += step
        size *= 2


def _power_spectrum(x):
    """|X_k|^2 / N^2 for k = 0..N/2 (iterative radix-2 FFT of a real sequence)."""
    n = WINDOW
    re = [0.0] * n
    im = [0.0] * n
    bits = 0
    while (1 << bits) < n:
        bits += 1
    for i in range(n):
        r = 0
        v = i
        for _ in range(bits):
            r = (r << 1) | (v & 1)
            v >>= 1
        re[r] = x[i]
    cos_t, sin_t = _twiddles()
    _butterflies(re, im, n, cos_t, sin_t)
    nn = float(n * n)
    return [(re[k] * re[k] + im[k] * im[k]) / nn for k in range(n // 2 + 1)]


def axis_features(x):
    """8 features of one axis (a list of WINDOW floats)."""
    if len(x) != WINDOW:
        raise ValueError("need %d samples per axis, got %d" % (WINDOW, len(x)))
    mean = sum(x) / WINDOW
    d = [v - mean for v in x]
    m2 = sum(v * v for v in d) / WINDOW
    m4 = sum(v * v * v * v for v in d) / WINDOW
    rms = math.sqrt(m2)
    peak = max(abs(v) for v in d)
    mad = sum(abs(v) for v in d) / WINDOW
    out = [math.log(rms + EPS), math.log((peak + EPS) / (rms + EPS)),
           math.log((m4 + EPS * EPS) / (m2 * m2 + EPS * EPS)), math.log(mad + EPS)]
    p = _power_spectrum(d)
    for lo, hi in BANDS:
        out.append(0.5 * (math.log(sum(p[lo:hi]) + EPS) + 5.0))
    return out


def vibration_features(ax, ay, az):
    """24 features for one 3-axis window."""
    return axis_features(ax) + axis_features(ay) + axis_features(az)


def weather_features(temp_c, humidity_pct, pressure_hpa, pressure_3h_ago_hpa, hour):
    """6 features for one hourly reading."""
    a = 2 * math.pi * (hour % 24) / 24.0
    return [(temp_c - 15.0) / 10.0, (humidity_pct - 65.0) / 15.0, (pressure_hpa - 1013.0) / 10.0,
            (pressure_hpa - pressure_3h_ago_hpa) / 2.0, math.sin(a), math.cos(a)]


# ---------------------------------------------------------------- iris
IRIS_CENTER = (6.3, 2.9, 4.9, 1.7)     # training/datasets/iris.py CENTER and SPREAD
IRIS_SPREAD = (0.65, 0.33, 0.8, 0.42)
N_IRIS = 4


def iris_features(cm):
    """4 features from sepal length, sepal width, petal length, petal width (cm)."""
    return [(cm[i] - IRIS_CENTER[i]) / IRIS_SPREAD[i] for i in range(N_IRIS)]


# ---------------------------------------------------------------- keyword
KW_RATE = 16000          # Hz, 16-bit mono: one clip is KW_RATE samples
KW_FRAME = 480           # 30 ms Hann window
KW_HOP = 320             # 20 ms
KW_NFFT = 512            # the frame zero-padded to 512 for the FFT
KW_FRAMES = 49
KW_MELS = 40
N_KEYWORD = KW_FRAMES * KW_MELS
KW_FMIN = 20.0
KW_FMAX = 7600.0
KW_FLOOR = 1e-6          # added to each mel energy before the log


def _zeros(code, n):
    return array(code, bytearray(n * (4 if code == "f" else 2)))


def _hz_to_mel(f):
    return 2595.0 * math.log(1.0 + f / 700.0) / math.log(10.0)


def _mel_to_hz(m):
    return 700.0 * (math.pow(10.0, m / 2595.0) - 1.0)


class LogMel:
    """The 49x40 log-mel of one second of int16 audio, in a preallocated array('f').

    Per frame: Hann window (numpy.hanning), power |rfft(frame, 512)|^2, triangular mel
    filters from 20 to 7600 Hz, log(energy + 1e-6); row-major (frame, mel), as the
    keyword model takes it. The 512-point real FFT is one 256-point complex FFT (even
    samples as real parts, odd ones as imaginary parts) and a split step. Every table is
    built here, once: window, bit reversal, twiddles, and the mel filters as sparse rows
    (first bin, weights)."""

    def __init__(self):
        n = KW_NFFT // 2
        self.n = n
        # Hann window with the int16 -> [-1, 1) scale folded in
        self.win = _zeros("f", KW_FRAME)
        for i in range(KW_FRAME):
            self.win[i] = (0.5 - 0.5 * math.cos(2 * math.pi * i / (KW_FRAME - 1))) / 32768.0
        bits = 0
        while (1 << bits) < n:
            bits += 1
        self.rev = _zeros("H", n)
        for i in range(n):
            r = 0
            v = i
            for _ in range(bits):
                r = (r << 1) | (v & 1)
                v >>= 1
            self.rev[i] = r
        self.cos = _zeros("f", n // 2)     # 256-point complex FFT
        self.sin = _zeros("f", n // 2)
        for k in range(n // 2):
            self.cos[k] = math.cos(-2 * math.pi * k / n)
            self.sin[k] = math.sin(-2 * math.pi * k / n)
        self.rcos = _zeros("f", n + 1)     # split step of the 512-point real FFT
        self.rsin = _zeros("f", n + 1)
        for k in range(n + 1):
            self.rcos[k] = math.cos(-2 * math.pi * k / KW_NFFT)
            self.rsin[k] = math.sin(-2 * math.pi * k / KW_NFFT)
        self._mel_rows()
        self.re = _zeros("f", n)
        self.im = _zeros("f", n)
        self.power = _zeros("f", n + 1)
        self.out = _zeros("f", N_KEYWORD)

    def _mel_rows(self):
        """Triangular filters on the FFT bins, kept as (first bin, number of bins, offset
        of the first weight in self.weights)."""
        lo = _hz_to_mel(KW_FMIN)
        hi = _hz_to_mel(KW_FMAX)
        mels = [lo + (hi - lo) / (KW_MELS + 1) * i for i in range(KW_MELS + 1)] + [hi]  # numpy.linspace
        hz = [_mel_to_hz(m) for m in mels]
        rows = []
        weights = array("f")
        for m in range(KW_MELS):
            a, c, b = hz[m], hz[m + 1], hz[m + 2]
            first = -1
            row = []
            for k in range(self.n + 1):
                f = k * KW_RATE / KW_NFFT
                w = min((f - a) / (c - a), (b - f) / (b - c))
                if w > 0:
                    if first < 0:
                        first = k
                    row.append(w)
            rows.append((first, len(row), len(weights)))
            weights.extend(row)
        self.rows = rows
        self.weights = weights

    def _frame(self, audio, start):
        """Power spectrum (257 bins) of the frame at audio[start:start + 480] into self.power."""
        n = self.n
        re = self.re
        im = self.im
        win = self.win
        rev = self.rev
        half = KW_FRAME // 2
        for i in range(n):
            j = rev[i]
            if i < half:
                s = start + 2 * i
                re[j] = audio[s] * win[2 * i]
                im[j] = audio[s + 1] * win[2 * i + 1]
            else:  # zero padding
                re[j] = 0.0
                im[j] = 0.0
        _butterflies(re, im, n, self.cos, self.sin)
        # split: X[k] = E[k] + W^k O[k], E/O the spectra of the even/odd samples
        rcos = self.rcos
        rsin = self.rsin
        power = self.power
        for k in range(n + 1):
            p = k % n
            q = (n - k) % n
            ar = re[p]
            ai = im[p]
            cr = re[q]
            ci = im[q]
            er = 0.5 * (ar + cr)
            ei = 0.5 * (ai - ci)
            orr = 0.5 * (ai + ci)
            oi = 0.5 * (cr - ar)
            xr = er + orr * rcos[k] - oi * rsin[k]
            xi = ei + orr * rsin[k] + oi * rcos[k]
            power[k] = xr * xr + xi * xi

    def compute(self, audio):
        """audio: KW_RATE int16 samples (array('h') or list) -> self.out, N_KEYWORD floats."""
        if len(audio) < KW_RATE:
            raise ValueError("need %d samples, got %d" % (KW_RATE, len(audio)))
        out = self.out
        power = self.power
        weights = self.weights
        log = math.log
        i = 0
        for t in range(KW_FRAMES):
            self._frame(audio, t * KW_HOP)
            for first, count, off in self.rows:
                e = 0.0
                for j in range(count):
                    e += power[first + j] * weights[off + j]
                out[i] = log(e + KW_FLOOR)
                i += 1
        return out
