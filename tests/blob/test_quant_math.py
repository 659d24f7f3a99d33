"""training/quant_math.py: scalar and numpy forms agree, and match TFLM's documented edge cases."""
import numpy as np

from training import quant_math as qm


def test_quantize_multiplier_known_values():
    assert qm.quantize_multiplier(0.5) == (1 << 30, 0)
    assert qm.quantize_multiplier(1.0) == (1 << 30, 1)
    assert qm.quantize_multiplier(0.0) == (0, 0)
    assert qm.quantize_multiplier(2.0 ** -40) == (0, 0)  # flushed like TFLM
    m, s = qm.quantize_multiplier(0.999999999999)  # rounds up to 2^31 -> halved
    assert (m, s) == (1 << 30, 1)


def test_round_half_away_from_zero():
    assert [qm.tflite_round(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4999)] == [1, 2, 3, -1, -3, 2]


def test_srdhm_and_rdbpot_edges():
    assert qm.srdhm(qm.INT32_MIN, qm.INT32_MIN) == qm.INT32_MAX
    assert qm.rdbpot(-3, 1) == -2 and qm.rdbpot(3, 1) == 2 and qm.rdbpot(-5, 2) == -1
    assert qm.mbqm(100, 1 << 30, 1) == 100


def test_numpy_forms_agree_with_scalar_forms():
    rng = np.random.default_rng(3)
    x = rng.integers(qm.INT32_MIN, qm.INT32_MAX, 4000, dtype=np.int64)
    m = rng.integers(1 << 30, qm.INT32_MAX, 4000, dtype=np.int64)
    s = rng.integers(-31, 8, 4000, dtype=np.int64)
    got = qm.np_mbqm(x, m, s)
    want = [qm.mbqm(int(a), int(b), int(c)) for a, b, c in zip(x, m, s)]
    assert got.tolist() == want
    e = rng.integers(0, 31, 4000)
    assert qm.np_rdbpot(x, e).tolist() == [qm.rdbpot(int(a), int(b)) for a, b in zip(x, e)]


def test_gemmlowp_functions_track_the_real_functions():
    for v in np.linspace(-7.9, 7.9, 101):
        raw = int(round(v * (1 << 27)))
        assert abs(qm.gemmlowp_logistic(raw, 4) / 2 ** 31 - 1 / (1 + np.exp(-v))) < 1e-6
        assert abs(qm.gemmlowp_tanh(raw, 4) / 2 ** 31 - np.tanh(v)) < 1e-6
    for v in np.linspace(-31.9, 0, 101):
        raw = int(round(v * (1 << 26)))
        assert abs(qm.exp_on_negative_values(raw, 5) / 2 ** 31 - np.exp(v)) < 1e-6
