"""Training data for many workers: which scenes each replica reads, step by step.

Every scene belongs to one of ``batch_size`` *slots* for the whole run (a fixed seeded
permutation dealt round-robin). Global batch ``i`` of an epoch holds the ``i``-th scene of
every slot, each slot reshuffled per epoch from ``(seed, epoch, slot)``. Replica ``r`` of
``R`` owns the slots ``[r * b, (r + 1) * b)`` with ``b = batch_size / R``, so:

- a worker only ever reads the scenes of its own slots (a fixed share, decodable from a
  local disk or cache);
- the global batches are the same whatever the number of workers and replicas, so a run on
  two machines computes what one process computes (the tests compare the losses);
- every replica takes the same number of steps, ``scenes // batch_size`` per epoch (the
  collectives need it). The scenes left over (fewer than one batch) differ from epoch to
  epoch, so none is left out for good.

Example:
    >>> order = epoch_order(10, batch_size=4, seed=0, epoch=0)
    >>> order.shape  # 10 // 4 steps of 4 scenes
    (2, 4)
    >>> np.array_equal(np.sort(worker_order(order, worker=1, workers=2)),
    ...                np.sort(order[:, 2:].ravel()))
    True
    >>> scenes_of_worker(10, 4, seed=0, worker=0, workers=2).tolist() == sorted(
    ...     set(range(10)) - set(scenes_of_worker(10, 4, seed=0, worker=1, workers=2)))
    True
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from siamese_cd.errors import ConfigError, DatasetError
from siamese_cd.hints import option_hint

# Mixed into the seed of the slot assignment, so it differs from the per-epoch draws.
_SLOT_STREAM = 0x5107


def check_batch(batch_size: int, replicas: int, workers: int, scenes: int) -> None:
    """Raise `ConfigError` unless the global batch splits evenly and fits in the data."""
    if batch_size % replicas:
        suggestion = replicas * max(1, batch_size // replicas)
        raise ConfigError(
            f"--batch-size {batch_size} is the global batch: it must be a multiple of the "
            f"{replicas} replicas ({workers} worker(s)), e.g. {suggestion}"
        )
    if scenes < batch_size:
        raise DatasetError(
            f"the training split has {scenes} scenes, fewer than one global batch of {batch_size}"
        )


def slots(scenes: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """The scenes of each of the `batch_size` slots, fixed for the run."""
    dealt = np.random.default_rng([seed, _SLOT_STREAM]).permutation(scenes)
    return [dealt[s::batch_size] for s in range(batch_size)]


def epoch_order(scenes: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """Scene numbers of every global batch of `epoch`, as a (steps, batch_size) array."""
    steps = scenes // batch_size
    columns = [
        np.random.default_rng([seed, epoch, s]).permutation(slot)[:steps]
        for s, slot in enumerate(slots(scenes, batch_size, seed))
    ]
    return np.stack(columns, axis=1).astype(np.int64)


def worker_order(order: np.ndarray, worker: int, workers: int) -> np.ndarray:
    """The scenes one worker reads in an epoch, flat, one replica's batch after another.

    A worker's local replicas take consecutive per-replica batches of its dataset, so each
    step lists the worker's columns in order.
    """
    return np.split(order, workers, axis=1)[worker].reshape(-1)


def scenes_of_worker(scenes: int, batch_size: int, seed: int, worker: int, workers: int):
    """Every scene the worker may ever read (its slots), sorted."""
    per_worker = batch_size // workers
    owned = slots(scenes, batch_size, seed)[worker * per_worker : (worker + 1) * per_worker]
    return np.sort(np.concatenate(owned))


def shard_sums(source, scenes, standardize: bool, progress: bool = True) -> np.ndarray:
    """Counts over `scenes` of a `SampleSource` that sum across workers to the split's.

    Returns ``[changed pixels, mask pixels, pixels per band, then per band: sum, sum of
    squares]`` (float64); the band sums only with `standardize`. Masks (and, to
    standardise, images) of the given scenes only are decoded.
    """
    bands = source.channels
    sums = np.zeros(3 + 2 * bands, np.float64)
    for i in tqdm(scenes, desc="Reading this worker's share", unit="scene", disable=not progress):
        i = int(i)
        if standardize:
            t1, t2, mask = source.read_pair(i)
            pixels = np.concatenate([t1, t2]).reshape(-1, bands).astype(np.float64)
            sums[2] += len(pixels)
            sums[3 : 3 + bands] += pixels.sum(0)
            sums[3 + bands :] += np.square(pixels).sum(0)
        else:
            mask = source.read_mask(i)
        sums[0] += np.count_nonzero(mask)
        sums[1] += mask.size
    return sums


def resolve_from_sums(sums: np.ndarray, scaling: str, pixel_dtype, bands: int) -> tuple:
    """``(change fraction, preprocessing config)`` from all workers' `shard_sums`.

    Raises:
        DatasetError: if a band is constant (it cannot be standardised).
    """
    from siamese_cd.models.preprocessing import resolve_scaling

    fraction = sums[0] / sums[1]
    scaling = resolve_scaling(scaling, np.dtype(pixel_dtype))
    config = {"scaling": scaling, "in_channels": bands, "pixel_dtype": np.dtype(pixel_dtype).name}
    if scaling == "standardize":
        mean = sums[3 : 3 + bands] / sums[2]
        variance = sums[3 + bands :] / sums[2] - np.square(mean)
        if np.any(variance <= 0):
            flat = np.flatnonzero(variance <= 0) + 1
            raise DatasetError(
                f"band(s) {flat.tolist()} are constant over the training data (std 0), so "
                "they cannot be standardised; use "
                + option_hint("preprocessing='unit'", "--preprocessing unit")
            )
        config.update(mean=mean.tolist(), variance=variance.tolist())
    return fraction, config
