"""Model blobs for the node tests: the trained artifacts under models/<name>/<v>/
when the training tier has committed them, else an untrained twin of the same
architecture (bit-exactness and OTA do not need trained weights), converted once
and cached under var/node_tests/."""
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "var" / "node_tests"
NODE_MODELS = ("sine", "anomaly", "weather")
N_INPUTS = {"sine": 1, "anomaly": 24, "weather": 6}


def tflite(name: str) -> bytes:
    trained = sorted((ROOT / "models" / name).glob("*/int8.tflite"), key=lambda p: int(p.parent.name)
                     if p.parent.name.isdigit() else -1)
    if trained:
        return trained[-1].read_bytes()
    path = CACHE / ("%s.untrained.tflite" % name)
    if path.exists():
        return path.read_bytes()
    if name == "sine":
        from training import testmodels
        data = testmodels.get("dense_sine")  # the same 1-16-16-1 net
    else:
        import keras

        from training import models
        from training.convert import to_tflite
        keras.utils.set_random_seed(7)
        rep = np.random.default_rng(0).normal(0, 1.0, (64, N_INPUTS[name])).astype(np.float32)
        data = to_tflite(models.build(name), rep)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def blob(name: str, version: int, as_name: str | None = None) -> bytes:
    """Model blob of `name` with header version `version` (named `as_name` if given)."""
    from training.tflite_to_blob import convert
    return bytes(convert(tflite(name), as_name or name, version))


def golden(blob_bytes: bytes, n: int = 3, seed: int = 0):
    """[(input, output)] from the numpy reference runtime (bit-exact with TFLM)."""
    from training import reference_runtime
    m = reference_runtime.Model(blob_bytes)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.integers(-128, 128, m.input_size, dtype=np.int8)
        out.append((x.tobytes(), m.invoke(x).tobytes()))
    return out
