"""`compile()` is the paper's recipe, and fit sets what the training data decides."""

import keras
import numpy as np
import pytest

from siamese_cd import SiameseChangeModel
from siamese_cd.errors import ConfigError
from siamese_cd.models import recipe
from tests.testing import TestCase


def pixels(n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    t1 = rng.integers(0, 200, (n, size, size, 3)).astype(np.uint8)
    t2 = t1.copy()
    t2[:, :4, :4] = 255
    y = np.zeros((n, size, size, 1), np.float32)
    y[:, :4, :4] = 1  # change fraction 1/16
    return (t1, t2), y


class TestRecipe(TestCase):
    def test_compile_auto_is_adam_with_decay_and_weighted_bce(self):
        model = SiameseChangeModel(depth=2, filters=2)
        model.compile()
        assert isinstance(model.optimizer, keras.optimizers.Adam)
        assert model.optimizer.weight_decay == recipe.WEIGHT_DECAY == 1e-4
        schedule = recipe.epoch_schedule(model.optimizer)
        assert schedule.initial_learning_rate == recipe.LEARNING_RATE == 1e-3
        assert schedule.decay_rate == recipe.LR_DECAY_PER_EPOCH == 0.95
        assert model.loss.pos_weight == "auto"
        model.compile(learning_rate=3e-4)
        assert recipe.epoch_schedule(model.optimizer).initial_learning_rate == 3e-4
        with pytest.raises(ConfigError, match="optimizer='auto'"):
            model.compile(optimizer="sgd", learning_rate=0.1)

    def test_fit_sets_epoch_length_weight_and_preprocessing(self):
        x, y = pixels(n=8)
        model = SiameseChangeModel(depth=2, filters=2)
        model.compile()
        model.fit(x, y, batch_size=4, epochs=3, verbose=0)
        assert recipe.epoch_schedule(model.optimizer).steps_per_epoch == 2
        assert int(model.optimizer.iterations) == 6
        # After 6 steps, 3 epochs have ended: 1e-3 * 0.95 ** 3.
        assert float(model.optimizer.learning_rate) == pytest.approx(1e-3 * 0.95**3, rel=1e-6)
        assert model.loss.pos_weight == pytest.approx(15.0)
        assert model.preprocessor.scaling == "unit"

    def test_named_loss_works_with_tf_data(self):
        import tensorflow as tf

        x, y = pixels(n=6)
        y[:3] = 0  # change fraction 1/32
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
        model = SiameseChangeModel(depth=2, filters=2)
        model.compile(loss="bce")
        model.fit(data, epochs=1, verbose=0)
        assert model.loss.pos_weight == pytest.approx(31.0)
        assert recipe.epoch_schedule(model.optimizer).steps_per_epoch == 2
        model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
        model.compile()
        with pytest.raises(ConfigError, match="infinite"):
            model.fit(data.repeat(), epochs=1, steps_per_epoch=1, verbose=0)

    def test_schedule_without_epoch_length_is_a_clear_error(self):
        schedule = recipe.EpochDecay(1e-3, 0.5, None)
        with pytest.raises(ConfigError, match="epoch length"):
            schedule(0)
        revived = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(recipe.EpochDecay(2e-3, 0.5, 4))
        )
        assert [float(revived(step)) for step in (3, 4, 9)] == pytest.approx([2e-3, 1e-3, 5e-4])


class TestFaithfulRecipe(TestCase):
    def test_coupled_adam_step_equals_the_pytorch_update_by_hand(self):
        w0 = np.array([0.5, -1.0, 2.0], np.float32)
        grad = np.array([0.1, 0.2, -0.3], np.float32)
        variable = keras.Variable(w0)
        optimizer = recipe.CoupledAdam(learning_rate=0.01, l2=0.1)
        optimizer.build([variable])
        for _ in range(2):  # two steps, so the bias corrections differ from 1 - beta
            optimizer.apply([grad], [variable])
        # torch.optim.Adam(lr=0.01, weight_decay=0.1), written out.
        w, m, v = w0.astype(np.float64), 0.0, 0.0
        for t in (1, 2):
            g = grad + 0.1 * w
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g**2
            w = w - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(np.asarray(variable), w, rtol=1e-6)
        revived = self.run_serialization_test(optimizer)
        assert revived.l2 == 0.1

    def test_decoupled_and_coupled_recipes(self):
        coupled = recipe.recipe_optimizer(weight_decay="coupled")
        assert isinstance(coupled, recipe.CoupledAdam) and coupled.weight_decay is None
        assert coupled.l2 == recipe.WEIGHT_DECAY
        decoupled = recipe.recipe_optimizer(weight_decay="decoupled")
        assert decoupled.weight_decay == recipe.WEIGHT_DECAY
        with pytest.raises(ConfigError, match="weight_decay must be one of"):
            recipe.recipe_optimizer(weight_decay="l1")

    def test_torch_init_draws_weights_and_biases_within_one_over_sqrt_fan_in(self):
        keras.utils.set_random_seed(0)
        model = SiameseChangeModel(depth=2, filters=8, init="torch", preprocessing="unit")
        encoder = model.backbone.get_layer("encoder")
        for name, fan_in in (("enc1_1_conv", 9 * 3), ("enc2_1_conv", 9 * 8)):
            kernel, bias = (np.asarray(w) for w in encoder.get_layer(name).weights)
            bound = 1 / np.sqrt(fan_in)
            for values in (kernel, bias):
                assert np.abs(values).max() <= bound
            # Uniform over the whole range, not a narrower one: spread near bound / sqrt(3).
            assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.15)
            assert np.abs(bias).max() > 0  # PyTorch biases are not zero
        up = model.backbone.get_layer("dec2_up").weights[0]
        assert np.abs(np.asarray(up)).max() <= 1 / np.sqrt(9 * 16)
        assert SiameseChangeModel(depth=2, filters=2, preprocessing="unit").init == "torch"
        glorot = SiameseChangeModel(depth=2, filters=8, preprocessing="unit", init="glorot")
        bias = glorot.backbone.get_layer("encoder").get_layer("enc1_1_conv").weights[1]
        assert not np.asarray(bias).any()  # Keras: zero biases
        with pytest.raises(ConfigError, match="init must be one of"):
            SiameseChangeModel(init="he")
