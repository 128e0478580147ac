"""`compile()` is the paper's recipe, and fit sets what the training data decides."""

import keras
import numpy as np
import pytest

from siamese_cd import SiameseChangeModel
from siamese_cd.errors import ConfigError
from siamese_cd.models import recipe
from siamese_cd.models.losses import (
    ClassWeightedNLL,
    DiceLoss,
    WeightedBinaryCrossentropy,
    pos_weight_from_fraction,
)
from tests.testing import TestCase


def pixels(n=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    t1 = rng.integers(0, 200, (n, size, size, 3)).astype(np.uint8)
    t2 = t1.copy()
    t2[:, :4, :4] = 255
    y = np.zeros((n, size, size, 1), np.float32)
    y[:, :4, :4] = 1  # change fraction 1/16
    return (t1, t2), y


# The sigmoid recipe's model (the library's former default).
SIGMOID = {**recipe.RECIPE_MODELS["sigmoid"], "depth": 2, "filters": 2}


class TestDefaults(TestCase):
    def test_the_default_model_and_compile_are_the_published_ones(self):
        model = SiameseChangeModel(variant="conc", filters=2)
        paper = SiameseChangeModel.paper("conc", filters=2)
        assert model.backbone.get_config() == paper.backbone.get_config()
        assert model.preprocessor.get_config() == paper.preprocessor.get_config()
        assert (model.num_classes, model.alignment, model.preprocessor.scaling) == (
            2,
            "torch",
            "per_image",
        )
        model.compile()
        assert isinstance(model.optimizer, recipe.CoupledAdam)
        assert isinstance(model.loss, ClassWeightedNLL)
        # The same objects as recipe="paper", config for config.
        paper.compile(recipe="paper")
        configs = [{**m.optimizer.get_config(), "name": ""} for m in (model, paper)]
        assert configs[0] == configs[1]
        assert model.loss.get_config() == paper.loss.get_config()

    def test_auto_is_the_model_own_recipe_with_the_given_parts_replaced(self):
        model = SiameseChangeModel(**SIGMOID)
        model.compile()
        assert type(model.optimizer) is keras.optimizers.Adam
        assert isinstance(model.loss, WeightedBinaryCrossentropy)
        model = SiameseChangeModel(depth=2, filters=2)
        model.compile(loss="dice")
        assert isinstance(model.optimizer, recipe.CoupledAdam)
        assert isinstance(model.loss, DiceLoss)
        model.compile(recipe="sigmoid")  # the sigmoid recipe on a 2-class head
        assert type(model.optimizer) is keras.optimizers.Adam
        assert isinstance(model.loss, WeightedBinaryCrossentropy)
        with pytest.raises(ConfigError, match="once named 'default' is 'sigmoid'"):
            model.compile(recipe="default")

    def test_epoch_decay_is_pytorch_chained_float64_rate_rounded_once(self):
        """ExponentialLR multiplies the Python float rate by 0.95 each epoch; the schedule's
        rate is that product rounded once to float32 (computed in float32 it was 6.5e-7 of
        itself off at epoch 50)."""
        schedule = recipe.EpochDecay(1e-3, 0.95, steps_per_epoch=3)
        rate = 1e-3
        for epoch in range(101):
            if epoch in (1, 10, 50, 100):
                got = float(schedule(epoch * 3 + 2))
                assert got == float(np.float32(rate)), epoch
            rate *= 0.95


class TestRecipe(TestCase):
    def test_compile_auto_is_adam_with_decay_and_weighted_bce(self):
        model = SiameseChangeModel(**SIGMOID)
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
        model = SiameseChangeModel(**SIGMOID)
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
        model = SiameseChangeModel(**SIGMOID)
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


class TestPaperRecipe(TestCase):
    def test_coupled_adam_steps_like_pytorch_with_exact_betas(self):
        """PyTorch's first Adam step moves a weight by lr * g / (|g| + eps) exactly, its bias
        corrections computed in double precision; betas rounded to float32 would shorten it
        by about 7e-6 (relative), far above float64 round-off. Keras keeps the learning rate
        in a float32 variable, so the step is that rounded rate's (4.7e-8 from 1e-3)."""
        optimizer = recipe.CoupledAdam(learning_rate=1e-3, l2=0.0)
        variable = keras.Variable(np.zeros(3), dtype="float64")
        gradient = np.array([0.5, -2.0, 3.0])
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient, "float64"), variable)])
        expected = -float(np.float32(1e-3)) * gradient / (np.abs(gradient) + 1e-8)
        np.testing.assert_allclose(np.asarray(variable), expected, rtol=1e-12, atol=0)

    def test_paper_recipe_is_pytorch_adam_with_l2_and_the_weighted_nll(self):
        model = SiameseChangeModel.paper("conc", in_channels=3, filters=2)
        assert (model.num_classes, model.alignment, model.init) == (2, "torch", "torch")
        assert (model.depth, model.dropout, model.preprocessor.scaling) == (4, 0.2, "per_image")
        model.compile(recipe="paper")
        optimizer = model.optimizer
        assert isinstance(optimizer, recipe.CoupledAdam) and optimizer.weight_decay is None
        assert (optimizer.l2, optimizer.epsilon) == (1e-4, 1e-8)
        assert (optimizer.beta_1, optimizer.beta_2) == (0.9, 0.999)
        schedule = recipe.epoch_schedule(optimizer)
        assert (schedule.initial_learning_rate, schedule.decay_rate) == (1e-3, 0.95)
        assert isinstance(model.loss, ClassWeightedNLL) and model.loss.auto_pending

    def test_loss_is_the_weighted_nll_divided_by_the_weights(self):
        y = np.array([[[[1.0], [0.0], [0.0]], [[0.0], [1.0], [0.0]]]], np.float32)  # (1, 2, 3, 1)
        logits = np.random.default_rng(0).normal(size=(1, 2, 3, 2))
        p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        fraction = float(y.mean())  # 1/3
        # torch.nn.NLLLoss(weight=[2p, 2(1 - p)]) of log p, by hand.
        classes = y[..., 0].astype(int)
        weights = np.where(classes == 1, 2 * (1 - fraction), 2 * fraction)
        log_p_true = np.log(np.take_along_axis(p, classes[..., None], -1)[..., 0])
        expected = -(weights * log_p_true).sum() / weights.sum()
        model = SiameseChangeModel.paper("diff", in_channels=3, filters=2)
        model.compile(recipe="paper")
        model.loss.pos_weight = pos_weight_from_fraction(fraction)
        x = np.zeros((1, 2, 3, 3), np.float32)
        loss = model.compute_loss(x=(x, x), y=y, y_pred=p.astype(np.float32))
        assert float(loss) == pytest.approx(expected, rel=1e-6)
        sigmoid = ClassWeightedNLL(pos_weight=2.0)(y, p[..., 1:].astype(np.float32))
        assert float(sigmoid) == pytest.approx(expected, rel=1e-5)  # [1 - p, p] from one channel
        self.run_serialization_test(ClassWeightedNLL(pos_weight=2.0, no_change_factor=10))

    def test_fit_weights_change_from_the_masks_and_the_model_reloads(self, tmp_path):
        (t1, t2), y = pixels(n=4, size=16)
        model = SiameseChangeModel.paper("ef", in_channels=3, filters=2)
        model.compile(recipe="paper")
        history = model.fit((t1, t2), y, epochs=1, batch_size=2, verbose=0)
        assert model.loss.pos_weight == pytest.approx(15.0)  # change fraction 1/16
        assert recipe.epoch_schedule(model.optimizer).steps_per_epoch == 2
        assert np.isfinite(history.history["loss"][0])
        path = tmp_path / "paper.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert isinstance(loaded.optimizer, recipe.CoupledAdam)
        assert loaded.loss.pos_weight == pytest.approx(15.0)

    def test_paper_recipe_refuses_other_networks_and_losses(self):
        with pytest.raises(ConfigError, match="num_classes=1, alignment='keras'"):
            SiameseChangeModel(**SIGMOID).compile(recipe="paper")
        model = SiameseChangeModel.paper("diff", in_channels=3, filters=2)
        with pytest.raises(ConfigError, match="sets the optimizer and the loss"):
            model.compile(recipe="paper", loss="dice")
        with pytest.raises(ConfigError, match="recipe must be one of"):
            model.compile(recipe="fast")
