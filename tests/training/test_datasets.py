"""Generators are deterministic per seed and split without leakage across groups."""
import numpy as np
import pytest

from training.datasets import iris, sine, vibration, weather


def _same(a, b):
    for k in a:
        if isinstance(a[k], tuple):
            for u, v in zip(a[k], b[k]):
                np.testing.assert_array_equal(u, v)


def test_sine_deterministic_and_split():
    a, b, c = sine.make(0), sine.make(0), sine.make(1)
    _same(a, b)
    assert not np.array_equal(a["train"][0], c["train"][0])
    assert [len(a[k][0]) for k in ("train", "val", "test")] == [600, 200, 200]
    x, y = sine.clean_grid(100)
    np.testing.assert_allclose(y, np.sin(x), atol=1e-6)


def test_vibration_deterministic_and_split_by_machine():
    a = vibration.make(3, n_normal=40, n_fault=8, n_unseen=16)
    b = vibration.make(3, n_normal=40, n_fault=8, n_unseen=16)
    _same(a, b)
    seen, unseen = set(a["machines"]["seen"]), set(a["machines"]["unseen"])
    assert not seen & unseen and len(unseen) == vibration.N_UNSEEN
    assert set(a["test_unseen"][2].tolist()) == unseen
    for k in ("train", "val", "test_seen"):
        assert set(a[k][2].tolist()) <= seen
    assert set(a["train"][1].tolist()) == {0} and set(a["val"][1].tolist()) == {0}
    assert set(a["test_seen"][1].tolist()) == {0, 1}
    c = vibration.make(4, n_normal=40, n_fault=8, n_unseen=16)
    assert not np.array_equal(a["train"][0], c["train"][0])


def test_machine_stream_drifts_when_a_fault_develops():
    from training.features import vibration_features
    m = vibration.Machine(0, seed=0)
    healthy = vibration_features(np.stack(list(m.windows(20))))
    m.develop_fault("bearing", per_window=0.05)
    later = vibration_features(np.stack(list(m.windows(40))[-20:]))
    assert m.severity == pytest.approx(1.0)
    bands_x = slice(4, 8)  # log band energies of x: the ringing resonance lifts one of them
    assert np.max(later[:, bands_x].mean(0) - healthy[:, bands_x].mean(0)) > 0.5
    assert later[:, 2].mean() > healthy[:, 2].mean()  # ln kurtosis of x: impulsive
    m.set_regime(speed=1.1, load=0.9)
    assert m.window().shape == (256, 3)
    with pytest.raises(ValueError, match="unknown fault"):
        m.set_fault("melted")
    # the same machine and seed replay the same stream
    w1 = list(vibration.Machine(2, seed=5).windows(3))
    w2 = list(vibration.Machine(2, seed=5).windows(3))
    np.testing.assert_array_equal(np.stack(w1), np.stack(w2))


def test_weather_deterministic_and_split_by_station_and_week():
    a, b = weather.make(0, weeks=5), weather.make(0, weeks=5)
    _same(a, b)
    held = a["held_out_station"]
    assert set(a["test_station"][2].tolist()) == {held}
    weeks = {}
    for k in ("train", "val", "test_weeks"):
        assert held not in set(a[k][2].tolist())
        weeks[k] = set(a[k][3].tolist())
    assert not weeks["train"] & weeks["test_weeks"] and not weeks["train"] & weeks["val"]
    assert not weeks["val"] & weeks["test_weeks"]
    assert set(a["train"][1].tolist()) <= set(range(len(weather.CLASSES)))


def test_weather_station_stream():
    s = weather.Station(1, seed=0)
    r = s.reading()
    assert set(r) == {"temp_c", "humidity_pct", "pressure_hpa", "pressure_3h_ago_hpa", "hour", "sky"}
    base = [s.reading()["temp_c"] for _ in range(48)]
    s2 = weather.Station(1, seed=0)
    s2.reading()
    s2.drift(temp_offset=5.0)
    shifted = [s2.reading()["temp_c"] for _ in range(48)]
    assert np.mean(shifted) - np.mean(base) == pytest.approx(5.0, abs=0.5)


def test_iris_two_classes_and_splits():
    x, y = iris.load()
    assert x.shape == (100, 4) and set(y.tolist()) == {0.0, 1.0}
    s1, s2 = list(iris.splits(0)), list(iris.splits(0))
    assert len(s1) == 20
    for (tr, te), (tr2, te2) in zip(s1, s2):
        np.testing.assert_array_equal(te, te2)
        assert len(te) == 20 and not set(tr) & set(te) and len(tr) + len(te) == 100
        assert y[te].sum() == 10 and y[tr].sum() == 40  # stratified
    assert len({tuple(te) for _, te in s1}) == 20


def test_keyword_small_split_by_voice_variant():
    from training.datasets import keyword
    a = keyword.make(0, n_accents=1, copies=1, n_variants=10)
    b = keyword.make(0, n_accents=1, copies=1, n_variants=10)
    _same(a, b)
    variants = {k: {v.split("+", 1)[1] for v in a[k][2]} for k in ("train", "val", "test")}
    assert not variants["train"] & variants["test"] and not variants["train"] & variants["val"]
    assert not variants["val"] & variants["test"]
    assert a["train"][0].shape[1:] == (49, 40, 1) and a["train"][0].dtype == np.float32
    assert set(a["train"][1].tolist()) == set(range(len(keyword.CLASSES)))
