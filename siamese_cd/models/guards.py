"""`NaNGuard`: stop training at the first non-finite loss and remember where it happened.

It lives beside the model because `SiameseChangeModel.fit` adds one to every fit, so that a
diverged run stops with a `TrainingError` in Python as on the command line, rather than
carrying on with NaN weights.

Example:
    >>> guard = NaNGuard()
    >>> guard.on_epoch_begin(2)
    >>> guard.set_model(keras.Sequential())
    >>> guard.on_train_batch_end(5, {"loss": float("nan")})
    >>> guard.stopped_at, guard.model.stop_training
    ((2, 5), True)
    >>> print(guard.message())
    the training loss became NaN at epoch 3, batch 6, so training stopped. Try a lower learning rate, or check the data for empty or corrupt masks and NaN pixels.
"""  # noqa: E501

from __future__ import annotations

import math

import keras


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite, and remembers where.

    Unlike `keras.callbacks.TerminateOnNaN` it keeps ``(epoch, batch)`` (zero-based) in
    `stopped_at`, so the caller can raise a clear error instead of carrying on with a broken
    model.
    """

    def __init__(self):
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped_at = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stopped_at = (self._epoch, batch)
            self.model.stop_training = True

    def message(self) -> str:
        """What happened and what to try, counting epochs and batches from 1."""
        epoch, batch = self.stopped_at
        return (
            f"the training loss became NaN at epoch {epoch + 1}, batch {batch + 1}, so training "
            "stopped. Try a lower learning rate, or check the data for empty or corrupt masks "
            "and NaN pixels."
        )
