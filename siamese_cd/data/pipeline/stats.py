"""Statistics of training data that set up training: the change fraction of the masks.

`SiameseChangeModel.fit` weights the change class of its loss by ``(1 - p) / p``
(`siamese_cd.models.losses.pos_weight_from_fraction`) with ``p`` from `change_fraction`, whatever
the input pipeline: a `PairedImageDataset`, a `tf.data.Dataset` or arrays.

Example:
    >>> import numpy as np
    >>> masks = np.zeros((2, 4, 4, 1), np.float32); masks[0, :2, :2] = 1
    >>> change_fraction(None, masks)
    0.125
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from siamese_cd.errors import ConfigError


def change_fraction(data, y=None, progress: bool = True) -> float:
    """Fraction of changed pixels (mask values >= 0.5) in training data, in one pass.

    Args:
        data: a `PairedImageDataset` (its masks are read once and the result kept), a finite
            `tf.data.Dataset` of ``((t1, t2), mask)`` batches (iterated once), or the inputs
            of NumPy training data (then `y` holds the masks).
        y: NumPy masks, for array training data.
        progress: show a progress bar while reading.

    Raises:
        ConfigError: if the data holds no masks, or is an infinite dataset.
    """
    if hasattr(data, "change_fraction"):
        return data.change_fraction(progress=progress)
    if y is not None:
        return float(np.mean(np.asarray(y) >= 0.5))
    if hasattr(data, "element_spec"):
        return _tf_dataset_fraction(data, progress)
    raise ConfigError(
        "the change weight of the loss is read from the training masks: give a "
        f"PairedImageDataset, a tf.data.Dataset of ((t1, t2), mask) batches or NumPy masks, "
        f"not {type(data).__name__}; or compile with "
        "loss=WeightedBinaryCrossentropy(pos_weight=...)"
    )


def _tf_dataset_fraction(dataset, progress: bool) -> float:
    import tensorflow as tf

    count = int(dataset.cardinality())
    if count == tf.data.INFINITE_CARDINALITY:
        raise ConfigError(
            "cannot read the change fraction of an infinite tf.data.Dataset (repeat()); "
            "compile with loss=WeightedBinaryCrossentropy(pos_weight=...)"
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ConfigError(
            "the training tf.data.Dataset has no masks: its elements must be "
            "((t1, t2), mask) batches"
        )
    masks = dataset.map(lambda x, mask, *rest: mask)
    changed = total = 0
    total_batches = count if count > 0 else None
    for mask in tqdm(
        masks.as_numpy_iterator(),
        total=total_batches,
        desc="Reading masks",
        unit="batch",
        disable=not progress,
    ):
        changed += int(np.count_nonzero(mask >= 0.5))
        total += mask.size
    if total == 0:
        raise ConfigError("the training tf.data.Dataset is empty")
    return changed / total
