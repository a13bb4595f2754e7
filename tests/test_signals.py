"""The six signals against hand-computed values (seeds' definitions, population statistics)."""

import numpy as np
import pytest

from salus_engine.signals import NUM_SIGNALS, SIGNAL_NAMES, SignalExtractor


def test_first_step_hand_computed():
    # Two members, two dims: a = [[1, 0], [3, 2]]; mean = [2, 1]; var = [1, 1]; std = [1, 1].
    s = SignalExtractor().update(np.array([[1.0, 0.0], [3.0, 2.0]]))
    assert s.dtype == np.float32 and s.shape == (NUM_SIGNALS,)
    np.testing.assert_allclose(s, [1.0, np.sqrt(5.0), 1.0, 0.0, 1.0, 0.0], rtol=1e-6)


def test_second_step_smoothness_and_trend():
    ex = SignalExtractor()
    ex.update(np.array([[1.0, 0.0], [3.0, 2.0]]))
    # mean = [0, 1]; var = [0, 4] -> std = [0, 2]; uncertainty 1.0; previous mean [2, 1].
    s = ex.update(np.array([[0.0, -1.0], [0.0, 3.0]]))
    np.testing.assert_allclose(s, [1.0, 1.0, 2.0, 2.0, 4.0, 0.0], rtol=1e-6)
    # mean = [0, 1] again, members agree: uncertainty drops by 1.
    s = ex.update(np.array([[0.0, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(s, [0.0, 1.0, 0.0, 0.0, 0.0, -1.0], atol=1e-7)


def test_three_members_uses_population_statistics():
    a = np.array([[0.0], [1.0], [2.0]])
    s = SignalExtractor().update(a)
    # population variance of {0,1,2} is 2/3 (the sample variance would be 1).
    np.testing.assert_allclose(s[[0, 2, 4]], [np.sqrt(2 / 3), 2 / 3, 2 / 3], rtol=1e-6)


def test_single_member_gives_zeros_not_nan():
    ex = SignalExtractor()
    s1 = ex.update(np.array([[0.5, -0.5, 0.0]]))
    s2 = ex.update(np.array([[0.5, 0.5, 0.0]]))
    assert np.all(np.isfinite(s2))
    np.testing.assert_allclose(s1[[0, 2, 4, 5]], 0.0)
    np.testing.assert_allclose(s2[3], 1.0)


def test_reset_restarts_smoothness_and_trend():
    ex = SignalExtractor()
    ex.update(np.array([[1.0], [3.0]]))
    ex.reset()
    s = ex.update(np.array([[10.0], [20.0]]))
    assert s[3] == 0.0 and s[5] == 0.0


@pytest.mark.parametrize("bad", [np.zeros((0, 7)), np.zeros(7), np.array([[np.nan, 0.0]])])
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        SignalExtractor().update(bad)


def test_names():
    assert SIGNAL_NAMES[0] == "epistemic_uncertainty" and len(SIGNAL_NAMES) == 6
