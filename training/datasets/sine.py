"""The TFLM hello_world task: y = sin(x) + 0.1 N(0,1), x ~ U(0, 2 pi)."""
import numpy as np


def make(seed: int = 0, n: int = 1000) -> dict:
    """60/20/20 split of `n` noisy samples: {'train'|'val'|'test': (x[N,1], y[N,1])}."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    y = (np.sin(x) + 0.1 * rng.standard_normal(n)).astype(np.float32)
    a, b = int(0.6 * n), int(0.8 * n)
    return {"train": (x[:a, None], y[:a, None]), "val": (x[a:b, None], y[a:b, None]),
            "test": (x[b:, None], y[b:, None])}


def clean_grid(n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced x over [0, 2 pi] and the true sin(x), for the MAE bar."""
    x = np.linspace(0, 2 * np.pi, n, dtype=np.float32)
    return x[:, None], np.sin(x)[:, None].astype(np.float32)
