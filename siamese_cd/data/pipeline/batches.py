"""How one batch of `PairedImageDataset` is assembled from its `SampleSource`.

Three paths give the same arrays: whole scenes decoded straight into the batch arrays
(`BatchAssembly._direct_batch`), whole scenes copied from the decoded cache
(`BatchAssembly._cached_batch`), and the general path (`BatchAssembly._sampled_batch`) that
reads samples (crops, tiles, scenes) through the source, augments them and copies them in. The
arrays come from `siamese_cd.data.pipeline.buffers.BatchBuffers`, reused across batches.
Nothing here imports Keras: the dataset class mixes this in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siamese_cd.data.readers.decoding import decode_into
from siamese_cd.errors import ImageReadError


def pack(t1: np.ndarray, t2: np.ndarray, mask: np.ndarray | None) -> tuple:
    """A batch as Keras reads it: ``((t1, t2), mask)``, or ``((t1, t2),)`` without labels."""
    if mask is None:
        # A 1-tuple, so Keras reads (t1, t2) as the inputs and not as (x, y).
        return ((t1, t2),)
    return (t1, t2), mask


class BatchAssembly:
    """The batch-making half of `PairedImageDataset`, kept apart to keep each part readable.

    It uses the dataset's `source`, `pairs`, `augment`, `pixel_dtype`, `labelled`, `tiles`,
    `crop_size`, `bands`, `cache`, `grayscale` and its `_buffers`.
    """

    def _fill(self, out: np.ndarray, image: np.ndarray, path: Path, rng=None) -> None:
        """Write one date into a batch slot: as stored, or jittered in raw units (given rng)."""
        if image.dtype != self.source.dtype:
            raise ImageReadError(
                f"{path}: {image.dtype} pixels, but this dataset's images hold "
                f"{self.source.dtype} pixels (the type of {self.pairs[0].t1}); store every "
                "image of a split with one bit depth"
            )
        if rng is not None and self.augment is not None and self.augment.radiometric:
            self.augment.jitter_raw(image, rng, out=out, path=path)
        else:
            np.copyto(out, image)

    def _sampled_batch(self, samples: np.ndarray, rng: np.random.Generator):
        """A batch read sample by sample through the source: crops, tiles, augmentation."""
        read = self.source.read_samples(samples, rng)
        count = len(read)
        shape = read[0][1][0].shape
        t1_batch = self._buffers.get((count, *shape), self.pixel_dtype)
        t2_batch = self._buffers.get((count, *shape), self.pixel_dtype)
        mask_shape = (count, *shape[:2], 1)
        mask_batch = self._buffers.get(mask_shape) if self.labelled else None
        for k, (scene, (t1, t2, mask)) in enumerate(read):
            if self.augment is not None:
                t1, t2, mask = self.augment(t1, t2, mask, rng)
            if t1.shape != shape:
                listing = ", ".join(f"{self.pairs[s].t1} {arrays[0].shape}" for s, arrays in read)
                raise ImageReadError(
                    f"images of one batch differ in size or bands ({listing}); use images of "
                    "one size, or crop_size= / tile_size=, and one band count (bands=)"
                )
            pair = self.pairs[scene]
            self._fill(t1_batch[k], t1, pair.t1, rng)
            self._fill(t2_batch[k], t2, pair.t2, rng)
            if mask_batch is not None:
                np.copyto(mask_batch[k, ..., 0], mask, casting="unsafe")
        return pack(t1_batch, t2_batch, mask_batch)

    def _whole_scenes(self) -> bool:
        """Whether a sample is a whole scene as stored: no crop, tile or augmentation."""
        return self.tiles is None and self.crop_size is None and self.augment is None

    def _whole_raw_scenes(self) -> bool:
        """Whether batches are whole scenes from files, all bands (see `_direct_batch`)."""
        return (
            self.cache is None
            and self._whole_scenes()
            and self.bands is None
            and self.source.files_are_samples
        )

    def _direct_batch(self, samples: np.ndarray):
        """A batch of whole scenes decoded straight into the batch arrays where possible.

        Returns None if a scene differs from the batch's first in size, bands or pixel type;
        the general path then reads the batch again and reports what differs.
        """
        # The first scene is read whole: it gives the batch its shape (read_pair checks that
        # its three sizes agree); the others are decoded into the slots it sized.
        t1, t2, mask = self.read_pair(int(samples[0]))
        shape = t1.shape
        if t2.shape != shape or t1.dtype != self.pixel_dtype or t2.dtype != t1.dtype:
            return None
        t1_batch = self._buffers.get((len(samples), *shape), self.pixel_dtype)
        t2_batch = self._buffers.get((len(samples), *shape), self.pixel_dtype)
        mask_batch = self._buffers.get((len(samples), *shape[:2], 1)) if self.labelled else None
        t1_batch[0], t2_batch[0] = t1, t2
        for k, scene in enumerate(samples):
            pair = self.pairs[int(scene)]
            if k > 0:
                self.source.check_grid(int(scene), pair)
                for path, batch in ((pair.t1, t1_batch), (pair.t2, t2_batch)):
                    if decode_into(path, batch[k], grayscale=self.grayscale) is not None:
                        return None
                if mask_batch is not None:
                    mask = self.source.read_label(pair.label)
            if mask_batch is not None:
                if mask.shape != shape[:2]:
                    return None
                np.copyto(mask_batch[k, ..., 0], mask, casting="unsafe")
        return pack(t1_batch, t2_batch, mask_batch)

    def _whole_cached_scenes(self) -> bool:
        """Whether batches are whole scenes from the cache, as stored (no crop, tile, augment)."""
        return self.cache is not None and self._whole_scenes()

    def _cached_batch(self, samples: np.ndarray):
        """A batch of same-size cached scenes, read straight into the batch arrays."""
        count = len(samples)
        height, width = self.cache.uniform_size(samples)
        image = (count, height, width, self.cache.channels)
        out = (
            self._buffers.get(image, self.cache.dtype),
            self._buffers.get(image, self.cache.dtype),
        ) + ((self._buffers.get((count, height, width), np.uint8),) if self.labelled else ())
        t1_batch, t2_batch, raw_mask = self.cache.read_batch(samples, out=out)
        mask_batch = None
        if self.labelled:
            mask_batch = self._buffers.get((count, height, width, 1))
            np.copyto(mask_batch[..., 0], raw_mask, casting="unsafe")
        return pack(t1_batch, t2_batch, mask_batch)
