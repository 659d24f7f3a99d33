"""Simulated devices fed by the training generators: an MPU6050 whose samples
come from a vibration `Machine`, a BME280 whose raw ADC words are chosen so the
driver's datasheet compensation returns the weather `Station`'s reading, an I2S
microphone that hears keyword clips, and the held-out iris rows."""
import hashlib
import struct

from tinyfleet_node.sensors import BME280, MPU6050

# Bosch BME280 datasheet example trimming (T, P) and typical humidity trimming.
BME_T = (27504, 26435, -1000)
BME_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
BME_H = (75, 362, 0, 313, 50, 30)


class SimMPU6050:
    def __init__(self, machine):
        self.machine = machine
        self.window = None
        self.i = 0
        self.regs = {}

    def write(self, reg, data):
        self.regs[reg] = data

    def read(self, reg, n):
        if reg != MPU6050.ACCEL_XOUT_H or n != 6:
            return bytes(n)
        if self.window is None or self.i >= len(self.window):
            self.window = self.machine.window()
            self.i = 0
        x, y, z = self.window[self.i]
        self.i += 1
        lsb = MPU6050.LSB_PER_G
        raw = [max(-32768, min(32767, int(round(v * lsb)))) for v in (x, y, z)]
        return struct.pack(">hhh", *raw)


def _calibration_bytes():
    tp = struct.pack("<HhhHhhhhhhhh", *(BME_T + BME_P))
    h1, h2, h3, h4, h5, h6 = BME_H
    e = struct.pack("<hB", h2, h3) + bytes([(h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4),
                                            (h5 >> 4) & 0xFF, h6 & 0xFF])
    return tp, bytes([h1]), e


def _search(f, target, lo, hi):
    """Smallest raw in [lo, hi] whose f(raw) is closest to target; f monotonic either way."""
    rising = f(hi) > f(lo)
    while lo < hi:
        mid = (lo + hi) // 2
        if (f(mid) < target) == rising:
            lo = mid + 1
        else:
            hi = mid
    return lo


class _Driverless:
    """The compensation maths of the driver, without an I2C bus."""
    compensate = BME280.compensate

    def __init__(self):
        self.T, self.P, self.H = BME_T, BME_P, BME_H


class SimBME280:
    def __init__(self, station):
        self.station = station
        tp, h1, e = _calibration_bytes()
        self.mem = {BME280.CALIB_TP: tp, BME280.CALIB_H1: h1, BME280.CALIB_H2: e}
        self.data = bytes(8)
        self.comp = _Driverless()
        self.last = None

    def write(self, reg, data):
        if reg == BME280.CTRL_MEAS and data and data[0] & 0x03:  # forced mode: take one reading
            r = self.station.reading()
            self.last = r
            self.data = self._raw(r["temp_c"], r["humidity_pct"], r["pressure_hpa"])

    def read(self, reg, n):
        if reg == BME280.DATA:
            return self.data[:n]
        return self.mem.get(reg, bytes(n))[:n]

    def _raw(self, temp, hum, pres):
        c = self.comp
        adc_t = _search(lambda a: c.compensate(a, 0, 0)[0], temp, 0, (1 << 20) - 1)
        adc_p = _search(lambda a: c.compensate(adc_t, a, 0)[2], pres, 0, (1 << 20) - 1)
        adc_h = _search(lambda a: c.compensate(adc_t, adc_p, a)[1], hum, 0, (1 << 16) - 1)
        return bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
                      adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
                      adc_h >> 8, adc_h & 0xFF])


class SimMicrophone:
    """An I2S microphone (16 kHz, 16-bit mono) that hears one second of a word per read.

    Words are synthesized by the keyword generator (espeak-ng + sox,
    training/datasets/keyword.py) in voice variants the committed keyword model never
    heard in training, then placed, mixed with noise and scaled by its `augment()`.
    `words` are keyword labels (`yes` ... `stop`, `_silence_`, `_unknown_`), played in
    turn, each in one of `voices` voices picked per word. Deterministic per seed;
    `split_seed` is the training seed whose held-out voices are used. The raw utterances
    are synthesized on first use and cached under var/keyword/sim/ (about 20 ms each to
    make); nothing is downloaded."""

    def __init__(self, words=None, seed=0, voices=4, split_seed=0):
        from training.datasets import keyword
        self.kw = keyword
        self.words = list(words) if words else list(keyword.CLASSES)
        for w in self.words:
            if w not in keyword.CLASSES:
                raise ValueError("unknown keyword label %r; one of %s" % (w, ", ".join(keyword.CLASSES)))
        self.rng = self._rng(seed)
        names = heldout_variants(split_seed)
        self.voices = []  # per word label: [(spoken word, voice, speed, pitch)]
        for w in self.words:
            picks = []
            for _ in range(voices):
                spoken = w if w in keyword.WORDS else str(self.rng.choice(keyword.UNKNOWN_WORDS))
                voice = "%s+%s" % (keyword.ACCENTS[int(self.rng.integers(4))], names[int(self.rng.integers(len(names)))])
                picks.append((spoken, voice, int(self.rng.integers(110, 220)), int(self.rng.integers(20, 80))))
            self.voices.append(picks)
        self.clips = {}
        self.turn = 0
        self.played = []  # labels heard so far, for tests and demos

    @staticmethod
    def _rng(seed):
        import numpy as np
        return np.random.default_rng([seed, 5])

    def _clip(self, spoken, voice, speed, pitch):
        """The raw utterance as int16, from memory, the disk cache, or espeak-ng."""
        import numpy as np
        key = (spoken, voice, speed, pitch)
        if key not in self.clips:
            name = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            path = self.kw.CACHE / "sim" / ("%s.pcm" % name)
            if path.exists():
                clip = np.frombuffer(path.read_bytes(), dtype="<i2").copy()
            else:
                clip = self.kw._synth(spoken, voice, speed, pitch)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(clip.astype("<i2").tobytes())
                tmp.replace(path)
            self.clips[key] = clip
        return self.clips[key]

    def next_clip(self):
        """(label, one second as int16) of the next word in turn."""
        import numpy as np
        i = self.turn % len(self.words)
        self.turn += 1
        label = self.words[i]
        if label == "_silence_":
            audio = self.kw.augment(np.zeros(0, dtype=np.int16), self.rng, silence=True)
        else:
            picks = self.voices[i]
            audio = self.kw.augment(self._clip(*picks[int(self.rng.integers(len(picks)))]), self.rng)
        self.played.append(label)
        return label, np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")

    def readinto(self, buf):
        """machine.I2S.readinto: fill `buf` with one clip from its start, return the bytes written."""
        view = memoryview(buf).cast("B")
        _, pcm = self.next_clip()
        data = pcm.tobytes()
        n = min(len(view), len(data))
        view[:n] = data[:n]
        return n


def heldout_variants(seed=0):
    """The espeak-ng voice variants training/datasets/keyword.py holds out for the test
    split (its `_make` split, repeated here): the committed model never heard them."""
    import numpy as np

    from training.datasets import keyword
    names = keyword.variants()
    order = np.random.default_rng(seed + 1).permutation(len(names))
    n_test = max(1, len(names) // 5)
    return sorted(names[i] for rank, i in enumerate(order) if rank < n_test)


def iris_rows(seed=0):
    """The held-out iris rows of training/datasets/iris.py's first split (seed `seed`) from
    scikit-learn's bundled dataset: [(sepal length, sepal width, petal length, petal width, class)]."""
    from sklearn.datasets import load_iris

    from training.datasets import iris
    d = load_iris()
    keep = d.target > 0
    cm = d.data[keep]
    y = d.target[keep] - 1
    _, test = next(iris.splits(seed))
    return [tuple(float(v) for v in cm[i]) + (iris.CLASSES[int(y[i])],) for i in test]


def iris_csv(seed=0):
    """iris_rows() as the CSV an iris node replays from flash (header line, 5 columns)."""
    lines = ["sepal_length,sepal_width,petal_length,petal_width,class"]
    for r in iris_rows(seed):
        lines.append("%g,%g,%g,%g,%s" % r)
    return ("\n".join(lines) + "\n").encode()
