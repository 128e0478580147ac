import numpy as np
import pytest

from siamese_cd.data.pipeline.stats import change_fraction
from siamese_cd.errors import ConfigError
from siamese_cd.models.losses import (
    DiceLoss,
    FocalLoss,
    SumOfLosses,
    WeightedBinaryCrossentropy,
    get_loss,
    pending_weight_losses,
    pos_weight_from_fraction,
)
from tests.testing import TestCase

Y = np.array([1, 0, 1, 0], np.float32).reshape(1, 2, 2, 1)
P = np.array([0.8, 0.3, 0.4, 0.1], np.float32).reshape(1, 2, 2, 1)


class TestLosses(TestCase):
    def test_weighted_bce_matches_hand_computation(self):
        y = np.array([1, 0, 1, 0], np.float32).reshape(1, 2, 2, 1)
        p = np.array([0.8, 0.3, 0.4, 0.1], np.float32).reshape(1, 2, 2, 1)
        loss = WeightedBinaryCrossentropy(pos_weight=3.0)
        expected = np.mean([-3 * np.log(0.8), -np.log(0.7), -3 * np.log(0.4), -np.log(0.9)])
        assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)

    def test_weight_normalised_bce_is_the_published_weighted_nll(self):
        # 2 changed pixels (weight 3) and 2 unchanged (weight 1): the published loss is the
        # weighted sum of -log p(true class) divided by the sum of weights, 3 + 1 + 3 + 1.
        nll = [-np.log(0.8), -np.log(0.7), -np.log(0.4), -np.log(0.9)]
        weights = [3.0, 1.0, 3.0, 1.0]
        expected = np.dot(weights, nll) / sum(weights)
        loss = WeightedBinaryCrossentropy(pos_weight=3.0, normalize="weights")
        assert float(loss(Y, P)) == pytest.approx(expected, rel=1e-5)
        # The same with a 2-class softmax head, whose channel 1 is change.
        assert float(loss(Y, np.concatenate([1 - P, P], -1))) == pytest.approx(expected, rel=1e-5)
        # Per-pixel mean instead: the same sum divided by the pixel count.
        pixels = WeightedBinaryCrossentropy(pos_weight=3.0, normalize="pixels")
        assert float(pixels(Y, P)) == pytest.approx(np.dot(weights, nll) / 4, rel=1e-5)
        # A batch rich in change weighs no more than one without: a no-change batch of
        # confident pixels and a change batch of the same confidence give the same loss.
        ones, zeros = np.ones_like(Y), np.zeros_like(Y)
        rich = float(loss(ones, np.full_like(P, 0.8)))
        none = float(loss(zeros, np.full_like(P, 0.2)))
        assert rich == pytest.approx(none, rel=1e-5)
        with pytest.raises(ConfigError, match="normalize must be one of"):
            WeightedBinaryCrossentropy(normalize="batch")

    def test_unit_weight_is_plain_bce(self):
        import keras

        rng = np.random.default_rng(0)
        y = (rng.random((2, 4, 4, 1)) > 0.5).astype(np.float32)
        p = rng.uniform(0.05, 0.95, (2, 4, 4, 1)).astype(np.float32)
        ours = float(WeightedBinaryCrossentropy(pos_weight=1.0)(y, p))
        assert ours == pytest.approx(float(keras.losses.BinaryCrossentropy()(y, p)), rel=1e-4)

    def test_pos_weight_from_fraction_is_paper_ratio(self):
        # Paper weights: no-change 2p, change 2(1 - p); ratio (1 - p) / p.
        assert pos_weight_from_fraction(0.2) == pytest.approx(4.0)
        for bad in (0.0, 1.0):
            with pytest.raises(ConfigError, match="both change and no-change"):
                pos_weight_from_fraction(bad)

    def test_auto_weight_waits_for_the_training_masks(self):
        loss = WeightedBinaryCrossentropy()
        assert pending_weight_losses(loss) == [loss]
        with pytest.raises(ConfigError, match="not known yet"):
            loss(np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), 0.5))
        y = np.zeros((1, 2, 2, 1), np.float32)
        y[0, 0, 0] = 1
        assert change_fraction(None, y) == pytest.approx(0.25)
        with pytest.raises(ConfigError, match="not list"):
            change_fraction([1, 2])

    def test_bad_pos_weight(self):
        with pytest.raises(ConfigError, match="positive"):
            WeightedBinaryCrossentropy(pos_weight=0)

    def test_serialization(self):
        assert (
            self.run_serialization_test(WeightedBinaryCrossentropy(pos_weight=2.5)).pos_weight
            == 2.5
        )
        assert self.run_serialization_test(WeightedBinaryCrossentropy()).pos_weight == "auto"

    def test_dice_matches_hand_computation(self):
        # overlap 0.8 + 0.4 = 1.2; |P| = 1.6, |Y| = 2.
        assert float(DiceLoss(smooth=0.0)(Y, P)) == pytest.approx(1 - 2.4 / 3.6, rel=1e-5)
        assert float(DiceLoss(smooth=1.0)(Y, P)) == pytest.approx(1 - 3.4 / 4.6, rel=1e-5)

    def test_dice_is_per_sample_and_zero_without_change_predicted_as_none(self):
        y = np.stack([Y[0], np.zeros_like(Y[0])])
        p = np.stack([P[0], np.zeros_like(P[0])])
        per_sample = DiceLoss(reduction=None)(y, p)
        assert float(per_sample[1]) == pytest.approx(0.0)
        assert float(per_sample[0]) == pytest.approx(1 - 3.4 / 4.6, rel=1e-5)

    def test_focal_matches_hand_computation(self):
        alpha, gamma = 0.25, 2.0
        expected = np.mean(
            [
                -alpha * 0.2**gamma * np.log(0.8),
                -(1 - alpha) * 0.3**gamma * np.log(0.7),
                -alpha * 0.6**gamma * np.log(0.4),
                -(1 - alpha) * 0.1**gamma * np.log(0.9),
            ]
        )
        assert float(FocalLoss(alpha, gamma)(Y, P)) == pytest.approx(expected, rel=1e-5)
        # gamma 0 and alpha 0.5 is half the plain cross-entropy.
        half_bce = float(WeightedBinaryCrossentropy(pos_weight=1.0)(Y, P)) / 2
        assert float(FocalLoss(0.5, 0.0)(Y, P)) == pytest.approx(half_bce, rel=1e-5)
        with pytest.raises(ConfigError, match="alpha"):
            FocalLoss(alpha=1.5)

    def test_losses_take_two_class_softmax(self):
        scores = np.concatenate([1 - P, P], axis=-1)
        for loss in (WeightedBinaryCrossentropy(2.0), DiceLoss(), FocalLoss()):
            assert float(loss(Y, scores)) == pytest.approx(float(loss(Y, P)), rel=1e-5)

    def test_sum_is_weighted_sum_of_parts(self):
        bce, dice = WeightedBinaryCrossentropy(pos_weight=2.0), DiceLoss()
        total = SumOfLosses([bce, dice], weights=[1.0, 0.5])
        assert float(total(Y, P)) == pytest.approx(float(bce(Y, P)) + 0.5 * float(dice(Y, P)))
        with pytest.raises(ConfigError, match="2 losses and 1 weights"):
            SumOfLosses([bce, dice], weights=[1.0])

    def test_get_loss_by_name(self):
        assert isinstance(get_loss("dice"), DiceLoss)
        combined = get_loss("bce+dice")
        assert isinstance(combined, SumOfLosses)
        assert [type(p) for p in combined.losses] == [WeightedBinaryCrossentropy, DiceLoss]
        assert combined.auto_pending
        assert pending_weight_losses(combined) == [combined.losses[0]]
        combined.losses[0].pos_weight = 3.0
        assert not combined.auto_pending and not pending_weight_losses(combined)
        with pytest.raises(ConfigError, match=r"unknown loss 'bce\+lovasz'"):
            get_loss("bce+lovasz")

    @pytest.mark.parametrize(
        "loss",
        [DiceLoss(smooth=0.5), FocalLoss(alpha=0.4, gamma=1.0), get_loss("bce+focal")],
        ids=["dice", "focal", "sum"],
    )
    def test_serialization_of_all_losses(self, loss):
        for part in pending_weight_losses(loss):
            part.pos_weight = 3.0
        revived = self.run_serialization_test(loss)
        assert float(revived(Y, P)) == pytest.approx(float(loss(Y, P)))
