"""`PairedImageDataset`: batches of co-registered image pairs and change masks, read from disk.

Only the list of file paths lives in memory; each batch is decoded when it is asked for, so
memory stays flat however many pairs a split holds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

from siamese_cd.data.augment import Augment
from siamese_cd.data.decoding import read_image, read_label, to_unit_float
from siamese_cd.data.pairing import Pair, pair_by_stem, pair_split
from siamese_cd.errors import DatasetError, ImageReadError


def default_workers() -> int:
    """Decoding threads for `fit`: one per core, at most 8 (Pillow decodes outside the GIL)."""
    return max(1, min(8, os.cpu_count() or 1))


class PairedImageDataset(keras.utils.PyDataset):
    """Batches `((t1, t2), mask)` from a change-detection split folder, pairing files by name.

    A split folder in the SYSU-CD layout holds ``time1/``, ``time2/`` and ``label/``, whose
    files are matched by stem (``time1/0001.png`` with ``time2/0001.png`` and
    ``label/0001.png``). Images are scaled to float32 in [0, 1]; masks are binarised to 0/1 at
    `label_threshold` (0/1 masks are recognised and kept as they are). Batches are float32 NHWC:
    ``t1`` and ``t2`` of shape (B, H, W, 3) and ``mask`` of shape (B, H, W, 1). Without labels
    (``label_dir=None``) batches are ``((t1, t2),)``, inputs only, for prediction.

    Args:
        root: a split folder in a known layout. Alternatively give `t1_dir`, `t2_dir` and
            `label_dir`.
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        shuffle: reshuffle the samples at the end of every epoch.
        augment: ``True`` for random flips and rotations (`Augment()`), or an `Augment`.
        seed: seed of shuffling and augmentation; None draws one.
        label_threshold: mask values at or above it are change.
        on_missing: ``"error"`` (default) raises on a file without its counterparts;
            ``"skip"`` leaves such files out with a warning.
        t1_dir: folder of first-date images, instead of `root`.
        t2_dir: folder of second-date images, instead of `root`.
        label_dir: folder of masks, instead of `root`; None for unlabelled data.
        workers: decoding threads used by `fit`; defaults to one per core, at most 8.
        use_multiprocessing: decode in processes instead of threads.
        max_queue_size: batches prepared ahead; memory is about
            ``(max_queue_size + workers)`` batches.

    Example:
        >>> train = PairedImageDataset("data/synthetic/train", batch_size=16,
        ...                            augment=True, shuffle=True)  # doctest: +SKIP
        >>> (t1, t2), mask = train[0]  # doctest: +SKIP
        >>> t1.shape, mask.shape  # doctest: +SKIP
        ((16, 64, 64, 3), (16, 64, 64, 1))
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        batch_size: int = 16,
        shuffle: bool = False,
        augment: bool | Augment = False,
        seed: int | None = None,
        label_threshold: int = 128,
        on_missing: str = "error",
        t1_dir: str | Path | None = None,
        t2_dir: str | Path | None = None,
        label_dir: str | Path | None = None,
        workers: int | None = None,
        use_multiprocessing: bool = False,
        max_queue_size: int = 4,
    ):
        super().__init__(
            workers=default_workers() if workers is None else workers,
            use_multiprocessing=use_multiprocessing,
            max_queue_size=max_queue_size,
        )
        if batch_size < 1:
            raise DatasetError(f"batch_size must be at least 1, got {batch_size}")
        if root is not None and (t1_dir or t2_dir or label_dir):
            raise DatasetError("give either a split folder or t1_dir/t2_dir/label_dir, not both")
        if root is not None:
            self.pairs: list[Pair] = pair_split(root, on_missing=on_missing)
        elif t1_dir is not None and t2_dir is not None:
            self.pairs = pair_by_stem(t1_dir, t2_dir, label_dir, on_missing=on_missing)
        else:
            raise DatasetError("give a split folder, or both t1_dir and t2_dir")
        self.root = Path(root) if root is not None else None
        self.labelled = self.pairs[0].label is not None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = Augment() if augment is True else (augment or None)
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else seed
        self.label_threshold = label_threshold
        self._generation = 0
        self._order = np.arange(len(self.pairs))
        self._change_fraction: float | None = None
        if shuffle:
            self._reshuffle()

    def __len__(self) -> int:
        return math.ceil(len(self.pairs) / self.batch_size)

    def __repr__(self) -> str:
        source = self.root if self.root is not None else self.pairs[0].t1.parent
        return (
            f"PairedImageDataset({str(source)!r}, pairs={len(self.pairs)}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, augment={self.augment})"
        )

    def _reshuffle(self) -> None:
        rng = np.random.default_rng([self.seed, self._generation])
        self._order = rng.permutation(len(self.pairs))

    def on_epoch_end(self) -> None:
        # Keras also calls this once before the first epoch; a new permutation each call is fine.
        self._generation += 1
        if self.shuffle:
            self._reshuffle()

    def read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Decode sample `index` (in file order) as integer arrays, checking that sizes agree.

        Returns:
            ``(t1, t2, mask)``: (H, W, 3) images in their file's dtype and an (H, W) uint8 0/1
            mask, or None without labels.

        Raises:
            ImageReadError: if a file cannot be decoded or the three sizes differ.
        """
        pair = self.pairs[index]
        t1, t2 = read_image(pair.t1), read_image(pair.t2)
        mask = read_label(pair.label, self.label_threshold) if pair.label is not None else None
        shapes = [t1.shape[:2], t2.shape[:2]] + ([mask.shape] if mask is not None else [])
        if len(set(shapes)) > 1:
            files = [("t1", pair.t1, t1.shape), ("t2", pair.t2, t2.shape)]
            if mask is not None:
                files.append(("label", pair.label, mask.shape))
            listing = ", ".join(f"{role} {path} {shape}" for role, path, shape in files)
            raise ImageReadError(f"sample {pair.stem!r}: sizes differ: {listing}")
        return t1, t2, mask

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample `index` (in file order) as the model sees it, without augmentation.

        Returns:
            ``(t1, t2, mask)`` as float32 arrays of shape (H, W, 3), (H, W, 3) and (H, W, 1);
            mask is None without labels.
        """
        t1, t2, mask = self.read_pair(index)
        return (
            to_unit_float(t1),
            to_unit_float(t2),
            mask[..., None].astype(np.float32) if mask is not None else None,
        )

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        indices = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self._generation, index, 1])
        samples = []
        for i in indices:
            t1, t2, mask = self.read_pair(int(i))
            if self.augment is not None:
                t1, t2, mask = self.augment(t1, t2, mask, rng)
            samples.append((t1, t2, mask))
        shapes = {s[0].shape for s in samples}
        if len(shapes) > 1:
            listing = ", ".join(
                f"{self.pairs[int(i)].t1} {s[0].shape}" for i, s in zip(indices, samples)
            )
            raise ImageReadError(
                f"images of one batch differ in size ({listing}); use images of one size"
            )
        t1 = np.stack([to_unit_float(s[0]) for s in samples])
        t2 = np.stack([to_unit_float(s[1]) for s in samples])
        if not self.labelled:
            # A 1-tuple, so Keras reads (t1, t2) as the inputs and not as (x, y).
            return ((t1, t2),)
        mask = np.stack([s[2] for s in samples])[..., None].astype(np.float32)
        return (t1, t2), mask

    def change_fraction(self, progress: bool = True) -> float:
        """Fraction of changed pixels over every mask of the split, read in one streaming pass.

        The result is kept, so later calls are free.

        Raises:
            DatasetError: if the dataset has no labels.
        """
        if not self.labelled:
            raise DatasetError("change_fraction needs labels; this dataset has none")
        if self._change_fraction is None:
            changed = total = 0
            for pair in tqdm(self.pairs, desc="Reading masks", unit="mask", disable=not progress):
                mask = read_label(pair.label, self.label_threshold)
                changed += int(mask.sum())
                total += mask.size
            self._change_fraction = changed / total
        return self._change_fraction
