"""IRIS, versicolor (0) vs virginica (1), as in the AI-ANNE example.

Inputs are the four measurements in cm, centred and scaled by fixed constants
(rounded from the two classes' statistics) so that one int8 input scale suits all
four features; a node applies the same `scale()` before quantizing. Training
standardizes again with each training split's own statistics (see train.fit_iris)."""
import numpy as np

CLASSES = ["versicolor", "virginica"]
CENTER = np.array([6.3, 2.9, 4.9, 1.7], dtype=np.float32)
SPREAD = np.array([0.65, 0.33, 0.8, 0.42], dtype=np.float32)


def scale(cm: np.ndarray) -> np.ndarray:
    return ((np.asarray(cm, dtype=np.float32) - CENTER) / SPREAD).astype(np.float32)


def load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris
    d = load_iris()
    keep = d.target > 0
    return scale(d.data[keep]), (d.target[keep] - 1).astype(np.float32)


def splits(seed: int = 0, n_splits: int = 20, n_test: int = 20):
    """`n_splits` random (train_idx, test_idx) pairs, stratified: every test split holds
    n_test/2 flowers of each class and every training split is balanced, so the splits
    differ only in which flowers they hold, not in class mix (an unstratified 20-sample
    draw ranges from 6/14 to 14/6)."""
    rng = np.random.default_rng(seed)
    _, y = load()
    for _ in range(n_splits):
        test = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n_test // 2] for c in (0, 1)]))
        yield np.setdiff1d(np.arange(len(y)), test), test


def make(seed: int = 0) -> dict:
    """The first split: its 80 training flowers (validation happens inside by cross-validation)."""
    x, y = load()
    train, test = next(splits(seed))
    return {"train": (x[train], y[train, None]), "test": (x[test], y[test, None])}
