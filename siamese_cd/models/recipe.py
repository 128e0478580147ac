"""The training recipes, written once: the published one (the default) and the sigmoid one.

``"paper"`` is the training of Daudt et al. (ICIP 2018) as the authors' PyTorch code does it,
to the arithmetic: `CoupledAdam` (``torch.optim.Adam(lr=1e-3, weight_decay=1e-4)``), the
learning rate multiplied by 0.95 after every epoch (`EpochDecay`), and
`siamese_cd.models.losses.ClassWeightedNLL` (``NLLLoss`` with the class weights
``[2p, 2(1 - p)]``, normalised by the weights) on a 2-class softmax head. It needs the
published network's pixel grid (``alignment="torch"``) and head (``num_classes=2``), which are
`SiameseChangeModel`'s defaults; `PAPER_MODEL` holds the whole published set-up.

``"sigmoid"`` trains a 1-channel sigmoid head (``num_classes=1``): Keras's Adam with decoupled
weight decay 1e-4, the same decay, and a class-weighted binary cross-entropy (or any loss of
`siamese_cd.models.losses.get_loss`). The recipe ablation (docs/model.md, "Defaults from
evidence") found no departure from ``"paper"`` that clears it, so ``"paper"`` is the default;
`siamese_cd.models.recipe_names` holds the names and what each recipe's model is built with.

``compile()`` (``recipe="auto"``) trains a model with its own recipe (`model_recipe`): the
published head and grid take ``"paper"``, any other model ``"sigmoid"``. The command line,
the tuner, the examples and the benchmarks reach the recipes through that call.

Example:
    >>> optimizer = recipe_optimizer(steps_per_epoch=10)
    >>> schedule = epoch_schedule(optimizer)
    >>> [round(float(schedule(step)), 6) for step in (0, 9, 10, 30)]
    [0.001, 0.001, 0.00095, 0.000857]
    >>> model_recipe(num_classes=2, alignment="torch"), model_recipe(1, "keras")
    ('paper', 'sigmoid')
"""

from __future__ import annotations

import math

import keras
from keras import ops

from siamese_cd.errors import ConfigError
from siamese_cd.models.losses import ClassWeightedNLL, get_loss, is_loss_name
from siamese_cd.models.recipe_names import (  # noqa: F401 - the recipes' names, re-exported
    DEFAULT_RECIPE,
    RECIPE_MODELS,
    RECIPES,
    check_recipe,
    model_recipe,
)

LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4
LR_DECAY_PER_EPOCH = 0.95
# The published networks and inputs (the authors' SiamUnet_diff, SiamUnet_conc and Unet and
# their notebook's per-image standardisation), as `SiameseChangeModel` arguments.
PAPER_MODEL = {
    "depth": 4,
    "filters": 16,
    "convs_per_level": None,
    "dropout": 0.2,
    "batch_norm": True,
    "num_classes": 2,
    "preprocessing": "per_image",
    "init": "torch",
    "alignment": "torch",
}


@keras.saving.register_keras_serializable(package="siamese_cd")
class EpochDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** epoch``, the epoch counted in optimizer steps.

    `steps_per_epoch` is usually unknown when the model is compiled; `SiameseChangeModel.fit`
    sets it from the training data before the first step.

    Args:
        initial_learning_rate: the learning rate of the first epoch.
        decay_rate: factor applied after every epoch.
        steps_per_epoch: optimizer steps in one epoch, or None until `fit` sets it.
    """

    def __init__(
        self,
        initial_learning_rate: float = LEARNING_RATE,
        decay_rate: float = LR_DECAY_PER_EPOCH,
        steps_per_epoch: int | None = None,
    ):
        if not initial_learning_rate > 0 or not 0 < decay_rate <= 1:
            raise ConfigError(
                f"need a positive learning rate and 0 < decay_rate <= 1, got "
                f"{initial_learning_rate} and {decay_rate}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_rate = float(decay_rate)
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        if self.steps_per_epoch is None:
            raise ConfigError(
                "the per-epoch learning-rate decay does not know the epoch length yet: "
                "SiameseChangeModel.fit sets it; in a custom loop set "
                "siamese_cd.models.recipe.epoch_schedule(optimizer).steps_per_epoch first"
            )
        # In float64, as PyTorch's ExponentialLR multiplies Python floats: in float32 the
        # rate of epoch 50 was 6.5e-7 of itself off (1.2e-6 at 100), against 1e-8 of
        # rounding the float64 rate once.
        epoch = ops.floor(ops.cast(step, "float64") / float(self.steps_per_epoch))
        decay = ops.power(ops.convert_to_tensor(self.decay_rate, "float64"), epoch)
        return ops.cast(self.initial_learning_rate * decay, "float32")

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_rate": self.decay_rate,
            "steps_per_epoch": self.steps_per_epoch,
        }


@keras.saving.register_keras_serializable(package="siamese_cd")
class CoupledAdam(keras.optimizers.Adam):
    """Adam with L2 weight decay added to the gradient, as ``torch.optim.Adam(weight_decay=)``.

    Each step adds ``l2 * w`` to the gradient of every trainable variable before the moment
    estimates (coupled L2), and divides by ``sqrt(v_hat) + epsilon`` as PyTorch does. Keras's
    own ``Adam(weight_decay=)`` is decoupled instead: it shrinks each weight by
    ``learning_rate * weight_decay`` per step, about 1e-7 of its value in this recipe.

    Args:
        learning_rate: a float or a `LearningRateSchedule`.
        l2: the coupled weight decay.
        epsilon: PyTorch's default, 1e-8.
        **kwargs: other `keras.optimizers.Adam` arguments.
    """

    def __init__(
        self, learning_rate=LEARNING_RATE, l2: float = WEIGHT_DECAY, epsilon=1e-8, **kwargs
    ):
        super().__init__(learning_rate=learning_rate, epsilon=epsilon, **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.add(ops.cast(gradient, dtype), ops.multiply(variable, self.l2))
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        m_hat = ops.divide(m, self._bias_correction(self.beta_1, dtype))
        v_hat = ops.divide(v, self._bias_correction(self.beta_2, dtype))
        self.assign_sub(variable, ops.divide(lr * m_hat, ops.sqrt(v_hat) + self.epsilon))

    def _bias_correction(self, beta: float, dtype):
        """``1 - beta ** step`` computed in float64, as PyTorch's Adam does in Python floats:
        a beta cast to float32 first (0.9 -> 0.89999998) shortens every step by about 7e-6."""
        step = ops.cast(self.iterations + 1, "float64")
        return ops.cast(1 - ops.power(ops.convert_to_tensor(beta, "float64"), step), dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "l2": self.l2}


WEIGHT_DECAY_MODES = ("decoupled", "coupled")


def recipe_optimizer(
    learning_rate: float = LEARNING_RATE,
    steps_per_epoch: int | None = None,
    weight_decay: str = "decoupled",
) -> keras.optimizers.Adam:
    """Adam with the recipe's weight decay and a learning rate × 0.95 per epoch.

    Args:
        learning_rate: the first epoch's learning rate.
        steps_per_epoch: optimizer steps per epoch; None lets `fit` set it.
        weight_decay: ``"decoupled"`` (Keras's ``Adam(weight_decay=1e-4)``) or ``"coupled"``
            (`CoupledAdam`, PyTorch's L2 on the gradient, as the published code).
    """
    schedule = EpochDecay(learning_rate, LR_DECAY_PER_EPOCH, steps_per_epoch)
    if weight_decay == "coupled":
        return CoupledAdam(learning_rate=schedule, l2=WEIGHT_DECAY)
    if weight_decay != "decoupled":
        raise ConfigError(f"weight_decay must be one of {WEIGHT_DECAY_MODES}, got {weight_decay!r}")
    return keras.optimizers.Adam(learning_rate=schedule, weight_decay=WEIGHT_DECAY)


def epoch_schedule(optimizer) -> EpochDecay | None:
    """The optimizer's `EpochDecay`, if its learning rate follows one."""
    schedule = getattr(optimizer, "_learning_rate", None)
    return schedule if isinstance(schedule, EpochDecay) else None


def steps_per_epoch(x, batch_size: int | None = None, steps: int | None = None) -> int | None:
    """Optimizer steps per epoch of ``fit(x, batch_size=..., steps_per_epoch=...)``.

    A `keras.utils.PyDataset` has a length, a finite `tf.data.Dataset` a cardinality, and
    arrays (or a tuple of them) are cut into batches of `batch_size` (Keras's default 32).
    Returns None when the data does not tell (a generator, an infinite dataset).
    """
    if steps is not None:
        return int(steps)
    if isinstance(x, keras.utils.PyDataset):
        return len(x)
    if hasattr(x, "cardinality"):
        count = int(x.cardinality())
        return count if count > 0 else None
    first = x[0] if isinstance(x, (tuple, list)) else x
    if hasattr(first, "shape"):
        return math.ceil(first.shape[0] / (batch_size or 32))
    return None


def recipe_objects(
    recipe: str,
    optimizer="auto",
    loss="auto",
    learning_rate: float | None = None,
    *,
    num_classes: int = 2,
    alignment: str = "torch",
) -> tuple:
    """The ``(optimizer, loss)`` that `SiameseChangeModel.compile` passes to Keras.

    ``recipe="auto"`` is the model's own recipe (`model_recipe`), whose optimizer and loss
    stand in for ``"auto"``; a given optimizer or loss replaces that part. ``"paper"``: the
    published training (see the module docstring), which sets both, so `optimizer` and `loss`
    must stay ``"auto"``. ``"sigmoid"``: ``"auto"`` stands for `recipe_optimizer` and the
    class-weighted binary cross-entropy; loss names are resolved by
    `siamese_cd.models.losses.get_loss`.

    Raises:
        ConfigError: an unknown recipe, a learning rate with a given optimizer, or
            ``"paper"`` on a model without the published grid and head.
    """
    check_recipe(recipe)
    if recipe == "paper":
        if optimizer != "auto" or loss != "auto":
            raise ConfigError(
                "recipe='paper' sets the optimizer and the loss (PyTorch's Adam with L2 1e-4 "
                "and the class-weighted NLL); leave optimizer and loss out, or use "
                "recipe='auto' (the model's recipe with the parts given replaced)"
            )
        if model_recipe(num_classes, alignment) != "paper":
            raise ConfigError(
                "recipe='paper' trains the published network, whose head is a 2-class "
                "softmax on PyTorch's pixel grid; this model has "
                f"num_classes={num_classes}, alignment={alignment!r}. Build it with "
                "SiameseChangeModel's defaults (or num_classes=2, alignment='torch')"
            )
    elif recipe == "auto":
        recipe = model_recipe(num_classes, alignment)
    if optimizer == "auto":
        rate = learning_rate or LEARNING_RATE
        coupling = "coupled" if recipe == "paper" else "decoupled"
        optimizer = recipe_optimizer(rate, weight_decay=coupling)
    elif learning_rate is not None:
        raise ConfigError("learning_rate= sets the recipe's optimizer; use optimizer='auto'")
    if loss == "auto":
        loss = ClassWeightedNLL() if recipe == "paper" else "bce"
    if is_loss_name(loss):
        loss = get_loss(loss)
    return optimizer, loss
