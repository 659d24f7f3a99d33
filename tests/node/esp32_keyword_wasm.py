"""Runs INSIDE the real MicroPython (WebAssembly build, node_firmware/wasm/run.mjs):
the ESP32 keyword path of tinyfleet_node.sensors.KeywordSource (I2S reads into a
preallocated array, features.LogMel) and Inference.quantize, on clips given as raw
int16. Writes the float32 features and the int8 input bytes of every clip, and prints
one JSON line: RAM taken by the keyword source, CPU time per clip (a whole
sample() with its I2S reads, and the log-mel alone).
argv: clips.pcm model.tfmb features.out int8.out

The file runs as three parts (run.mjs --then; split at the "part" comment lines):
this wasm build frees garbage only between parts, so the RAM of the source is
measured from a collect in one part to a collect in the next."""
import gc
import json
import sys

from tinyfleet_node.inference import Inference
from tinyfleet_node.sensors import KeywordSource

try:
    from runhost import cpu_us  # process CPU time (run.mjs)
except ImportError:
    from time import ticks_us as cpu_us

PCM, BLOB, FEATS, INT8 = sys.argv[1:5]
CHUNK = 4000  # samples per I2S read: the source must put short reads together


class FileMic:
    """machine.I2S.readinto over a file of int16 clips, CHUNK samples per call."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        self.pos = 0

    def readinto(self, buf):
        n = min(len(buf), CHUNK)  # buf: a memoryview of array('h'), so n samples
        for i in range(n):
            lo = self.data[self.pos]
            hi = self.data[self.pos + 1]
            v = lo | (hi << 8)
            buf[i] = v - 65536 if v > 32767 else v
            self.pos += 2
        return 2 * n


class NoModel:
    def load_model(self, blob, budget):
        return None


mic = FileMic(PCM)
clips = len(mic.data) // 32000
with open(BLOB, "rb") as f:
    inf = Inference(NoModel(), f.read(), None, "classify")
# ---- part 2
gc.collect()
before = gc.mem_alloc()
t = cpu_us()
src = KeywordSource(mic)
init_us = cpu_us() - t
# ---- part 3
gc.collect()
ram = gc.mem_alloc() - before
sample_us = []
logmel_us = []
with open(FEATS, "wb") as ff, open(INT8, "wb") as fq:
    for _ in range(clips):
        t = cpu_us()
        feats, _ = src.sample()
        sample_us.append(cpu_us() - t)
        ff.write(feats)
        fq.write(inf.quantize(feats))
        if len(logmel_us) < 3:  # the log-mel alone, without the file reads
            t = cpu_us()
            src.mel.compute(src.audio)
            logmel_us.append(cpu_us() - t)
print(json.dumps({"clips": clips, "ram_bytes": ram, "init_us": init_us, "sample_us": sample_us,
                  "logmel_us": logmel_us}))
