"""The training recipe of Daudt et al. (ICIP 2018), written once.

Adam at 1e-3 with weight decay 1e-4, the learning rate multiplied by 0.95 after every epoch,
and a class-weighted binary cross-entropy whose change weight comes from the training data.
`SiameseChangeModel.compile()` (``optimizer="auto"``, ``loss="auto"``) is this recipe; the
command line, the tuner, the examples and the benchmarks reach it through that call.

Example:
    >>> optimizer = recipe_optimizer(steps_per_epoch=10)
    >>> schedule = epoch_schedule(optimizer)
    >>> [round(float(schedule(step)), 6) for step in (0, 9, 10, 30)]
    [0.001, 0.001, 0.00095, 0.000857]
"""

from __future__ import annotations

import math

import keras
from keras import ops

from siamese_cd.errors import ConfigError

LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-4
LR_DECAY_PER_EPOCH = 0.95


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
                "optimizer.learning_rate.schedule.steps_per_epoch first"
            )
        epoch = ops.floor(ops.cast(step, "float32") / float(self.steps_per_epoch))
        return self.initial_learning_rate * ops.power(self.decay_rate, epoch)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_rate": self.decay_rate,
            "steps_per_epoch": self.steps_per_epoch,
        }


def recipe_optimizer(
    learning_rate: float = LEARNING_RATE, steps_per_epoch: int | None = None
) -> keras.optimizers.Adam:
    """Adam with the recipe's weight decay and a learning rate × 0.95 per epoch."""
    return keras.optimizers.Adam(
        learning_rate=EpochDecay(learning_rate, LR_DECAY_PER_EPOCH, steps_per_epoch),
        weight_decay=WEIGHT_DECAY,
    )


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
