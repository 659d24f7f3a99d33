"""The IRIS trainer: stacked copies are independent nets, and the exported net is the copy."""
import numpy as np

from training.datasets import iris
from training.models import build
from training.train import _train_copies, fit_iris


def test_exported_net_reproduces_its_copy_with_standardization_folded_in():
    x, y = iris.load()
    masks = np.random.default_rng(0).random((6, 100)) < 0.7
    weights, final, trace, p = _train_copies("iris_a", x, y, masks.astype(np.float32), [1e-3] * 6, 60, 0.02, 0)
    assert trace.shape == (60, 6) and final.shape == (6,) and p.shape == (100, 6)
    for j in range(6):
        net = build("iris_a", batch=None)
        net.set_weights([w[j] for w in weights])
        np.testing.assert_allclose(net(x).numpy()[:, 0], p[:, j], atol=1e-4)


def test_copies_train_independently():
    """A copy's result does not depend on which other copies share the stack."""
    x, y = iris.load()
    rows = np.zeros((1, 100), np.float32)
    rows[0, :80] = 1
    alone = _train_copies("iris_b", x, y, rows, [1e-3], 40, 0.02, 0)
    masks = np.concatenate([rows, np.ones((3, 100), np.float32)])
    shared = _train_copies("iris_b", x, y, masks, [1e-3, 0.0, 1e-2, 3e-2], 40, 0.02, 0)
    np.testing.assert_allclose(alone[1][0], shared[1][0], rtol=1e-4)


def test_fit_iris_returns_one_net_per_training_set():
    x, y = iris.load()
    trains = [tr for tr, _ in iris.splits(3, 2)]
    fits = fit_iris("iris_b", x, y, trains, seed=0, steps=30, lr=0.02)
    assert len(fits) == 2
    for model, info in fits:
        assert model.input_shape == (1, 4) and info["l2"] == min(info["inner_cv_loss"], key=info["inner_cv_loss"].get)
        assert len(info["loss"]) == 30


def test_each_copy_fits_its_own_target_column():
    """fit_iris hands every copy its own teacher's posterior: column j is copy j's target."""
    x, y = iris.load()
    masks = np.ones((2, 100), np.float32)
    targets = np.stack([y, 1 - y], axis=1)
    _, _, _, p = _train_copies("iris_b", x, targets, masks, [1e-3, 1e-3], 200, 0.02, 0)
    assert np.mean((p[:, 0] > 0.5) == (y > 0.5)) > 0.9
    assert np.mean((p[:, 1] > 0.5) == (y < 0.5)) > 0.9
