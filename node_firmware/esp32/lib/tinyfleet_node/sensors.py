"""Sensor drivers (I2C accelerometer, BME280, ADC microphone) and the sources
that turn their readings into a model's features. Each source's `sample()`
returns (features, truth); truth is known only for the synthetic sine and for
iris rows that carry their class."""
import math
import struct
from array import array

try:
    from node_firmware.micropython import features  # CPython (simulation)
except ImportError:
    import features  # type: ignore[import-not-found, no-redef]  # /lib/features.py on the device


class MPU6050:
    """3-axis accelerometer at +-8 g (4096 LSB/g)."""
    PWR_MGMT_1 = 0x6B
    ACCEL_CONFIG = 0x1C
    ACCEL_XOUT_H = 0x3B
    LSB_PER_G = 4096.0

    def __init__(self, i2c, addr=0x68):
        self.i2c = i2c
        self.addr = addr
        i2c.writeto_mem(addr, self.PWR_MGMT_1, b"\x00")
        i2c.writeto_mem(addr, self.ACCEL_CONFIG, b"\x10")

    def read(self):
        x, y, z = struct.unpack(">hhh", self.i2c.readfrom_mem(self.addr, self.ACCEL_XOUT_H, 6))
        return x / self.LSB_PER_G, y / self.LSB_PER_G, z / self.LSB_PER_G


def _s16(v):
    return v - 65536 if v > 32767 else v


def _s12(v):
    return v - 4096 if v > 2047 else v


class BME280:
    """Temperature (C), humidity (%) and pressure (hPa), forced mode, datasheet
    floating-point compensation (Bosch BME280 datasheet section 8.1)."""
    CALIB_TP = 0x88
    CALIB_H1 = 0xA1
    CALIB_H2 = 0xE1
    CTRL_HUM = 0xF2
    CTRL_MEAS = 0xF4
    DATA = 0xF7

    def __init__(self, i2c, addr=0x76, sleep_ms=None):
        self.i2c = i2c
        self.addr = addr
        self.sleep_ms = sleep_ms
        c = i2c.readfrom_mem(addr, self.CALIB_TP, 24)
        v = struct.unpack("<HhhHhhhhhhhh", c)
        self.T = v[0:3]
        self.P = v[3:12]
        h1 = i2c.readfrom_mem(addr, self.CALIB_H1, 1)[0]
        e = i2c.readfrom_mem(addr, self.CALIB_H2, 7)
        h2 = _s16(e[0] | (e[1] << 8))
        h3 = e[2]
        h4 = _s12((e[3] << 4) | (e[4] & 0x0F))
        h5 = _s12((e[5] << 4) | (e[4] >> 4))
        h6 = e[6] - 256 if e[6] > 127 else e[6]
        self.H = (h1, h2, h3, h4, h5, h6)
        i2c.writeto_mem(addr, self.CTRL_HUM, b"\x01")

    def read_raw(self):
        self.i2c.writeto_mem(self.addr, self.CTRL_MEAS, b"\x25")  # x1 oversampling, forced mode
        if self.sleep_ms is not None:
            self.sleep_ms(10)
        d = self.i2c.readfrom_mem(self.addr, self.DATA, 8)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        return adc_t, adc_p, adc_h

    def compensate(self, adc_t, adc_p, adc_h):
        """(temperature C, humidity %, pressure hPa, t_fine)."""
        t1, t2, t3 = self.T
        v1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
        d = adc_t / 131072.0 - t1 / 8192.0
        t_fine = v1 + d * d * t3
        temp = t_fine / 5120.0
        p1, p2, p3, p4, p5, p6, p7, p8, p9 = self.P
        v1 = t_fine / 2.0 - 64000.0
        v2 = v1 * v1 * p6 / 32768.0
        v2 = v2 + v1 * p5 * 2.0
        v2 = v2 / 4.0 + p4 * 65536.0
        v1 = (p3 * v1 * v1 / 524288.0 + p2 * v1) / 524288.0
        v1 = (1.0 + v1 / 32768.0) * p1
        if v1 == 0:
            pres = 0.0
        else:
            p = 1048576.0 - adc_p
            p = (p - v2 / 4096.0) * 6250.0 / v1
            pres = p + (p9 * p * p / 2147483648.0 + p * p8 / 32768.0 + p7) / 16.0
        h1, h2, h3, h4, h5, h6 = self.H
        vh = t_fine - 76800.0
        vh = (adc_h - (h4 * 64.0 + h5 / 16384.0 * vh)) * (
            h2 / 65536.0 * (1.0 + h6 / 67108864.0 * vh * (1.0 + h3 / 67108864.0 * vh)))
        vh = vh * (1.0 - h1 * vh / 524288.0)
        hum = 0.0 if vh < 0 else (100.0 if vh > 100 else vh)
        return temp, hum, pres / 100.0, t_fine

    def read(self):
        t, h, p, _ = self.compensate(*self.read_raw())
        return t, h, p


class MicADC:
    """A microphone on an ADC pin: `buffer(n)` returns n raw 12-bit samples."""

    def __init__(self, adc):
        self.adc = adc

    def buffer(self, n):
        out = []
        for _ in range(n):
            out.append(self.adc.read_u16() >> 4)
        return out


class SineSource:
    """Synthetic input for the sine model: x walks [0, 2 pi) by a golden-ratio step."""

    def __init__(self):
        self.phase = 0.0

    def sample(self):
        self.phase = (self.phase + 0.6180339887) % 1.0
        x = 2 * math.pi * self.phase
        return [x], math.sin(x)


class VibrationSource:
    """One window of 3-axis samples at features.RATE_HZ -> 24 features."""

    def __init__(self, accel, sleep_us):
        self.accel = accel
        self.sleep_us = sleep_us

    def sample(self):
        n = features.WINDOW
        ax = [0.0] * n
        ay = [0.0] * n
        az = [0.0] * n
        period = 1000000 // features.RATE_HZ
        for i in range(n):
            ax[i], ay[i], az[i] = self.accel.read()
            self.sleep_us(period)
        return features.vibration_features(ax, ay, az), None


class WeatherSource:
    """A BME280 reading plus the pressure `trend_samples` readings back -> 6 features."""

    def __init__(self, bme, hour, trend_samples=3):
        self.bme = bme
        self.hour = hour
        self.trend = trend_samples
        self.history = []

    def sample(self):
        t, h, p = self.bme.read()
        self.history.append(p)
        if len(self.history) > self.trend + 1:
            self.history.pop(0)
        return features.weather_features(t, h, p, self.history[0], self.hour()), None


class KeywordSource:
    """One second from an I2S microphone (16 kHz, 16-bit mono; `mic.readinto` like
    machine.I2S) -> the 49x40 log-mel (features.LogMel). The audio buffer, the FFT
    buffers and the feature array are allocated once, here."""

    def __init__(self, mic):
        self.mic = mic
        self.audio = array("h", bytearray(2 * features.KW_RATE))
        self.view = memoryview(self.audio)
        self.mel = features.LogMel()

    def sample(self):
        got = 0
        n = len(self.audio)
        while got < n:  # blocking I2S reads fill the buffer at once; this only guards short reads
            nbytes = self.mic.readinto(self.view[got:])
            if not nbytes:
                raise OSError("microphone gave no samples")
            got += nbytes // 2
        return self.mel.compute(self.audio), None


# Twenty rows of scikit-learn's bundled iris data, ten per class (the held-out rows
# of training/datasets/iris.py's stratified split, seed 0), in cm: sepal length, sepal
# width, petal length, petal width, class. An iris node without `rows_file` replays these.
IRIS_ROWS = (
    (6.9, 3.1, 4.9, 1.5, "versicolor"), (5.5, 2.3, 4.0, 1.3, "versicolor"), (6.5, 2.8, 4.6, 1.5, "versicolor"),
    (6.2, 2.2, 4.5, 1.5, "versicolor"), (5.9, 3.2, 4.8, 1.8, "versicolor"), (6.1, 2.8, 4.7, 1.2, "versicolor"),
    (6.4, 2.9, 4.3, 1.3, "versicolor"), (6.8, 2.8, 4.8, 1.4, "versicolor"), (5.4, 3.0, 4.5, 1.5, "versicolor"),
    (6.7, 3.1, 4.7, 1.5, "versicolor"), (5.8, 2.7, 5.1, 1.9, "virginica"), (7.6, 3.0, 6.6, 2.1, "virginica"),
    (7.3, 2.9, 6.3, 1.8, "virginica"), (5.7, 2.5, 5.0, 2.0, "virginica"), (6.5, 3.0, 5.5, 1.8, "virginica"),
    (6.9, 3.2, 5.7, 2.3, "virginica"), (6.1, 3.0, 4.9, 1.8, "virginica"), (6.4, 2.8, 5.6, 2.1, "virginica"),
    (7.2, 3.0, 5.8, 1.6, "virginica"), (6.9, 3.1, 5.4, 2.1, "virginica"),
)


def read_rows(data, where):
    """CSV text of iris rows (4 numbers in cm, an optional 5th column with the class;
    a header line and blank lines are skipped) -> [(sl, sw, pl, pw, class or None)]."""
    rows = []  # type: list
    lines = data.decode().split("\n")
    for i in range(len(lines)):
        cols = [c.strip() for c in lines[i].split(",")]
        if not cols[0] or cols[0].startswith("#"):
            continue
        try:
            cm = [float(c) for c in cols[:4]]
        except ValueError:
            if not rows and i == 0:
                continue  # the header
            raise ValueError("%s line %d: need 4 numbers (cm), got %r" % (where, i + 1, lines[i]))
        if len(cm) != 4:
            raise ValueError("%s line %d: need 4 numbers (cm), got %r" % (where, i + 1, lines[i]))
        rows.append((cm[0], cm[1], cm[2], cm[3], cols[4] if len(cols) > 4 and cols[4] else None))
    if not rows:
        raise ValueError("%s has no rows" % where)
    return rows


class IrisSource:
    """A sensor-less demo: replays iris rows in turn (a CSV on flash, or IRIS_ROWS)."""

    def __init__(self, rows):
        self.rows = rows
        self.i = 0

    def sample(self):
        row = self.rows[self.i]
        self.i = (self.i + 1) % len(self.rows)
        return features.iris_features(row), row[4]


def make_source(kind, hal, cfg):
    if kind == "sine":
        return SineSource()
    if kind == "iris":
        data = hal.fs.read(cfg["rows_file"])
        return IrisSource(IRIS_ROWS if data is None else read_rows(data, cfg["rows_file"]))
    if kind == "microphone":
        i2s = cfg["i2s"]
        return KeywordSource(hal.i2s(i2s.get("bus", 0), i2s.get("sck", 32), i2s.get("ws", 25), i2s.get("sd", 33),
                                     features.KW_RATE, i2s.get("ibuf", 16000)))
    i2c_cfg = cfg["i2c"]
    i2c = hal.i2c(i2c_cfg.get("bus", 0), i2c_cfg.get("scl", 22), i2c_cfg.get("sda", 21),
                  i2c_cfg.get("freq", 400000))
    if kind == "vibration":
        return VibrationSource(MPU6050(i2c, cfg["accel_addr"]), hal.sleep_us)
    if kind == "weather":
        return WeatherSource(BME280(i2c, cfg["bme_addr"], hal.sleep_ms), hal.hour, cfg["trend_samples"])
    raise ValueError("unknown sensor %r" % (kind,))
