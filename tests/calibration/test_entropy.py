import numpy as np
import pytest

from appliance.calibration.entropy import HISTOGRAM_BINS, entropy_amax


def histogram(values):
    top = float(np.abs(values).max())
    counts, _ = np.histogram(np.abs(values), bins=HISTOGRAM_BINS, range=(0, top))
    return counts, top


def test_outliers_are_clipped():
    rng = np.random.RandomState(0)
    values = np.concatenate([rng.randn(200000), [40.0, -55.0]])
    amax = entropy_amax(*histogram(values))
    assert 2.5 < amax < 6.0, amax


def test_a_uniform_distribution_keeps_nearly_its_whole_range():
    values = np.random.RandomState(1).uniform(-3, 3, 100000)
    assert entropy_amax(*histogram(values)) == pytest.approx(3.0, rel=0.05)


def test_matches_nvidias_reference_on_a_gaussian():
    # pytorch-quantization's _compute_amax_entropy on this histogram (seed 0, 200000 |N(0,1)| samples)
    values = np.abs(np.random.RandomState(0).randn(200000))
    counts, top = histogram(values)
    assert entropy_amax(counts, top) == pytest.approx(4.039482714195361, rel=1e-9)


def test_an_all_zero_tensor_gets_a_usable_range():
    assert entropy_amax(np.zeros(HISTOGRAM_BINS), 0.0) > 0
