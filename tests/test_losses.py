import numpy as np
import pytest

from siamese_cd.errors import ConfigError
from siamese_cd.losses import WeightedBinaryCrossentropy, pos_weight_from_fraction
from tests.helpers import run_serialization_test


def test_weighted_bce_matches_hand_computation():
    y = np.array([1, 0, 1, 0], np.float32).reshape(1, 2, 2, 1)
    p = np.array([0.8, 0.3, 0.4, 0.1], np.float32).reshape(1, 2, 2, 1)
    loss = WeightedBinaryCrossentropy(pos_weight=3.0)
    expected = np.mean([-3 * np.log(0.8), -np.log(0.7), -3 * np.log(0.4), -np.log(0.9)])
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)


def test_unit_weight_is_plain_bce():
    import keras

    rng = np.random.default_rng(0)
    y = (rng.random((2, 4, 4, 1)) > 0.5).astype(np.float32)
    p = rng.uniform(0.05, 0.95, (2, 4, 4, 1)).astype(np.float32)
    ours = float(WeightedBinaryCrossentropy(pos_weight=1.0)(y, p))
    assert ours == pytest.approx(float(keras.losses.BinaryCrossentropy()(y, p)), rel=1e-4)


def test_pos_weight_from_fraction_is_paper_ratio():
    # Paper weights: no-change 2p, change 2(1 - p); ratio (1 - p) / p.
    assert pos_weight_from_fraction(0.2) == pytest.approx(4.0)
    for bad in (0.0, 1.0):
        with pytest.raises(ConfigError, match="both change and no-change"):
            pos_weight_from_fraction(bad)


def test_auto_resolves_from_masks_and_refuses_unknown_input():
    loss = WeightedBinaryCrossentropy()
    with pytest.raises(ConfigError, match="not known yet"):
        loss(np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), 0.5))
    y = np.zeros((1, 2, 2, 1), np.float32)
    y[0, 0, 0] = 1
    assert loss.resolve_auto(None, y, verbose=False) == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="not list"):
        WeightedBinaryCrossentropy().resolve_auto([1, 2], None, verbose=False)


def test_bad_pos_weight():
    with pytest.raises(ConfigError, match="positive"):
        WeightedBinaryCrossentropy(pos_weight=0)


def test_serialization():
    assert run_serialization_test(WeightedBinaryCrossentropy(pos_weight=2.5)).pos_weight == 2.5
    assert run_serialization_test(WeightedBinaryCrossentropy()).pos_weight == "auto"
