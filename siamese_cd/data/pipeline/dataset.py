"""`PairedImageDataset`: batches of co-registered image pairs and change masks, read from disk.

Only file paths (and, for tiles, scene sizes) live in memory; each batch is decoded when it is
asked for, so memory stays flat however many pairs a split holds. The samples themselves (which
scene, which window, how files are read and labels binarised) come from a
`siamese_cd.data.pipeline.source.SampleSource`; this module batches, shuffles and augments them. The
same samples are available three ways: as a Keras `PyDataset` (``model.fit(dataset)``, decoded
in worker threads), as a `tf.data.Dataset` (`PairedImageDataset.as_tf_dataset`, decoded by
TensorFlow), and from a decoded cache on disk (``cache_dir=``), the fastest. Every way gives the
files' raw pixels; `SiameseChangeModel` scales them itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from siamese_cd.data.layouts.opening import open_source
from siamese_cd.data.pipeline.batches import BatchAssembly
from siamese_cd.data.pipeline.buffers import BatchBuffers
from siamese_cd.data.readers.decoding import DEFAULT_LABEL_THRESHOLD, pixel_scale
from siamese_cd.data.sampling.augment import Augment
from siamese_cd.errors import DatasetError


def default_workers() -> int:
    """Decoding threads for `fit`: one per usable core, at most 8 (decoding releases the GIL)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class PairedImageDataset(BatchAssembly, keras.utils.PyDataset):
    """Batches `((t1, t2), mask)` from a change-detection split, pairing files by name.

    **Where the files are.** `root` is a split folder in one of the known layouts, detected
    automatically: SYSU-CD (``time1/ time2/ label/``), LEVIR-CD and WHU-CD (``A/ B/ label/``),
    WHU-CD (``prev/ curr/ label/``), CDD (``A/ B/ OUT/``), S2Looking (``Image1/ Image2/
    label/``), SECOND (``im1/ im2/ label1/ label2/``, change read from the semantic maps). Or
    give the folders (`t1_dir`, `t2_dir`, `label_dir`), or a CSV file of ``t1,t2,label`` rows
    as `root`. Files are matched by stem, ignoring the extension (``time1/7.png`` with
    ``label/7.tif``); a file without its counterparts is an error naming it (`on_missing`).
    A whole download in a registered layout is recognised too, with `split` choosing the
    split (`siamese_cd.data.layouts.registry`): LEVIR-CD, LEVIR-CD+, S2Looking, CDD (its
    ``Real/subset``), SECOND and SYSU-CD as published, and the datasets read scene by scene:
    OSCD (bands by name, ``bands="rgb"``), SZTAKI AirChange, the WHU-CD release (one GeoTIFF
    pair per split) and ``<root>/<scene>/{t1, t2, label}`` scene folders (stems set by
    `scene_files`; no split).

    **What a batch holds.** ``t1`` and ``t2`` of shape (B, H, W, C) holding the files' raw
    pixels, in their stored type (`pixel_dtype`): uint8 for 8-bit files, uint16 for 16-bit
    ones, float32 for float GeoTIFFs. Nothing is scaled here: `SiameseChangeModel` scales
    pixels in its preprocessing layer, saved with the model, so training and serving see the
    same numbers. With radiometric augmentation the images are float32 in the same raw range
    (0..255 for 8-bit data). All images of a split must share one pixel type; a file of another
    bit depth is an error naming it. ``mask`` has shape (B, H, W, 1), float32 0/1: values at
    or above `label_threshold` are change, RGB masks count their brightest band, and PNG/TIFF
    masks holding only 0 and 1 are read as 0/1 masks. Without labels (``label_dir=None``) a
    batch is ``((t1, t2),)``, inputs only, for prediction.

    **Pixels.** RGB, grayscale (repeated to 3 bands, or kept as 1 with ``grayscale="keep"``)
    and RGBA PNGs (alpha dropped, with one warning) in 8 or 16 bits; multi-band GeoTIFF
    through rasterio (``pip install 'siamese_cd[geo]'``), every band kept (even one GDAL tags
    as alpha), with `bands` to choose bands. The two dates of a GeoTIFF scene must share
    one CRS and transform (a `GeoreferenceError` names both files otherwise).

    **Samples.** By default one sample per scene, whole. ``crop_size`` takes one random crop
    per scene and epoch (training on large scenes). ``tile_size`` cuts every scene into
    deterministic tiles (validation and test): a 1024² scene with ``tile_size=256`` gives 16
    samples. ``samples_per_scene=K`` with ``crop_size`` takes K random crops per scene and
    epoch (optionally with at least ``min_change`` changed pixels), so a split of 10 large
    scenes gives epochs of 10 K samples. ``len(dataset.pairs)`` counts scenes;
    `num_samples` counts samples; `sample` and batches number samples (tiles, with
    `tile_size`).

    **Speed.** ``fit`` decodes batches in `workers` threads; plain PNGs are decoded by libpng
    straight into the batch arrays, outside the GIL. `as_tf_dataset` gives the same
    samples as a `tf.data.Dataset` decoded by TensorFlow. ``cache_dir`` decodes every scene
    once into a compact store on disk (see `siamese_cd.data.pipeline.cache`), rebuilt automatically
    when the files or decoding options change.

    Args:
        root: a split folder in a known layout, or a CSV file of ``t1,t2,label`` rows (paths
            relative to the CSV). Alternatively give `t1_dir`, `t2_dir` and `label_dir`.
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        shuffle: reshuffle the samples at the end of every epoch.
        augment: ``True`` for random flips and rotations (`Augment()`), or an `Augment` with
            more parts (zoom, radiometric jitter, date swap). Off by default, as for
            validation; `sample` never augments.
        seed: seed of shuffling, cropping and augmentation; None draws one.
        label_threshold: mask values at or above it are change (default 128, for 8-bit).
        on_missing: ``"error"`` (default) raises on a file without its counterparts, naming
            up to 10 and the total; ``"skip"`` leaves such files out with one warning.
        t1_dir: folder of first-date images, instead of `root`.
        t2_dir: folder of second-date images, instead of `root`.
        label_dir: folder of masks, instead of `root`; None for unlabelled data.
        crop_size: side, or ``(height, width)``, of one random crop per scene and epoch.
        tile_size: side, or ``(height, width)``, of deterministic tiles covering each scene.
        tile_stride: step between tiles (default `tile_size`, no overlap). The last tile of a
            row or column is moved back to end at the border.
        samples_per_scene: random crops per scene and epoch with `crop_size` (default 1).
        min_change: with `crop_size`, redraw a crop (a bounded number of times) until at least
            this share of its pixels changed; 0 (default) takes the first draw.
        split: the split of a download `root` (see `siamese_cd.data.layouts.registry`):
            ``"train"``, ``"val"``, ``"test"`` as the layout has them, OSCD and AirChange also
            ``"all"``, or a list of scene names (OSCD cities, ``"Szada/2"``, ``"train/<stem>"``
            for pairs). Required for downloads; not for a split folder.
        scene_files: stems of the t1, t2 and label files in scene folders (default
            ``("t1", "t2", "label")``).
        bands: bands to read, counted from 1 as in GDAL, e.g. ``(4, 3, 2)``; None reads all
            (minus a PNG's alpha; a GeoTIFF's bands are all kept). For OSCD, band names:
            ``"rgb"``, ``"all"`` (default) or a list.
        grayscale: ``"expand"`` (default) repeats 1-band images to 3 bands; ``"keep"`` keeps
            1 band.
        cache_dir: folder of decoded caches; built on first use (with a progress bar).
        workers: decoding threads used by `fit`; defaults to one per core, at most 8, or 1
            when reading a cache without augmentation (one thread keeps up there).
        use_multiprocessing: decode in processes instead of threads.
        max_queue_size: batches prepared ahead; memory is about
            ``(max_queue_size + workers)`` batches.
        progress: show progress bars for long work (tile scanning, cache building).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> split = Path(tempfile.mkdtemp())
        >>> for folder, value in (("time1", 10), ("time2", 200), ("label", 255)):
        ...     (split / folder).mkdir()
        ...     for stem in ("a", "b", "c"):
        ...         image = np.zeros((32, 32), np.uint8)
        ...         image[8:16] = value
        ...         Image.fromarray(image).save(split / folder / f"{stem}.png")
        >>> train = PairedImageDataset(split, batch_size=2, crop_size=16, augment=True,
        ...                            shuffle=True, seed=0)
        >>> (t1, t2), mask = train[0]
        >>> t1.shape, t1.dtype, mask.shape, mask.dtype
        ((2, 16, 16, 3), dtype('uint8'), (2, 16, 16, 1), dtype('float32'))
        >>> val = PairedImageDataset(split, tile_size=16)
        >>> len(val.pairs), val.num_samples, len(val)  # 3 scenes of 32² -> 4 tiles each
        (3, 12, 1)
        >>> round(val.change_fraction(progress=False), 2)
        0.25
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        batch_size: int = 16,
        shuffle: bool = False,
        augment: bool | Augment = False,
        seed: int | None = None,
        label_threshold: int = DEFAULT_LABEL_THRESHOLD,
        on_missing: str = "error",
        t1_dir: str | Path | None = None,
        t2_dir: str | Path | None = None,
        label_dir: str | Path | None = None,
        crop_size: int | tuple[int, int] | None = None,
        tile_size: int | tuple[int, int] | None = None,
        tile_stride: int | tuple[int, int] | None = None,
        samples_per_scene: int = 1,
        min_change: float = 0.0,
        split: str | Sequence[str] | None = None,
        scene_files: tuple[str, str, str] | None = None,
        bands: Sequence[int] | str | None = None,
        grayscale: str = "expand",
        cache_dir: str | Path | None = None,
        workers: int | None = None,
        use_multiprocessing: bool = False,
        max_queue_size: int = 4,
        progress: bool = True,
    ):
        if workers is None:
            # Reading an un-augmented cache is a copy: one thread keeps up, and more only
            # contend for the GIL and the cores the model needs.
            workers = 1 if cache_dir is not None and not augment else default_workers()
        super().__init__(workers, use_multiprocessing, max_queue_size)
        if batch_size < 1:
            raise DatasetError(f"batch_size must be at least 1, got {batch_size}")
        self.root = Path(root) if root is not None else None
        self.source = open_source(
            root, split=split, scene_files=scene_files, t1_dir=t1_dir, t2_dir=t2_dir,
            label_dir=label_dir, on_missing=on_missing, bands=bands,
            label_threshold=label_threshold, grayscale=grayscale, crop_size=crop_size,
            tile_size=tile_size, tile_stride=tile_stride, samples_per_scene=samples_per_scene,
            min_change=min_change, cache_dir=cache_dir, workers=self.workers, progress=progress,
        )  # fmt: skip
        self._batching(batch_size, shuffle, augment, seed, progress)

    def _batching(self, batch_size: int, shuffle: bool, augment, seed, progress: bool) -> None:
        """Set up order, augmentation and the reused batch arrays, once the source is open."""
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = self._check_augment(augment)
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else seed
        self.progress = progress
        self._change_fraction: float | None = None
        self._generation = 0
        # Enough arrays for every batch Keras keeps in flight: queued, being made, being used.
        self._buffers = BatchBuffers(3 * (self.max_queue_size + self.workers + 3))
        self._order = np.arange(self.num_samples)
        if shuffle:
            self._reshuffle()

    def _check_augment(self, augment: bool | Augment | None) -> Augment | None:
        """The `Augment` to use, checked against the split's pixels."""
        if augment is not None and not isinstance(augment, (bool, Augment)):
            raise DatasetError(f"augment must be True, False or an Augment, got {augment!r}")
        augment = Augment() if augment is True else (augment or None)
        if augment is not None and augment.radiometric:
            pixel_scale(self.source.dtype, self.pairs[0].t1)  # 8 or 16 bits, or a clear error
        if augment is not None and augment.needs_rgb and self.channels != 3:
            raise DatasetError(
                f"{self.pairs[0].t1}: Augment hue/saturation need 3-band images, these have "
                f"{self.channels}"
            )
        return augment

    # -- description (the source's, read through) -----------------------------------------------

    pairs = property(lambda self: self.source.pairs, doc="The split's pairs, in file order.")
    labelled = property(lambda self: self.source.labelled, doc="Whether masks are read.")
    bands = property(lambda self: self.source.bands, doc="Bands read, counted from 1, or None.")
    grayscale = property(lambda self: self.source.grayscale, doc="Grayscale handling.")
    label_threshold = property(lambda self: self.source.label_threshold, doc="Change cut-off.")
    crop_size = property(lambda self: self.source.crop_size, doc="Crop (height, width) or None.")
    tiles = property(lambda self: self.source.tiles, doc="The `TileIndex` of tiles, or None.")
    cache = property(lambda self: self.source.cache, doc="The `DecodedCache`, or None.")

    @property
    def num_samples(self) -> int:
        """Samples per epoch: tiles with `tile_size`, otherwise one per scene."""
        return self.source.num_samples

    @property
    def channels(self) -> int:
        """Bands per image in the batches, read from the first sample (e.g. 3 for RGB).

        Pass it to the model: ``SiameseChangeModel(in_channels=dataset.channels)``.
        """
        return self.source.channels

    @property
    def pixel_dtype(self) -> np.dtype:
        """Type of the batch images: the files' stored pixel type (uint8, uint16, float32),
        or float32 (in the same raw range) with radiometric augmentation."""
        if self.augment is not None and self.augment.radiometric:
            return np.dtype(np.float32)
        return self.source.dtype

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __repr__(self) -> str:
        source = self.root if self.root is not None else self.pairs[0].t1.parent
        extra = f", samples={self.num_samples}" if self.tiles is not None else ""
        return (
            f"PairedImageDataset({str(source)!r}, pairs={len(self.pairs)}{extra}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, augment={self.augment})"
        )

    # -- order -----------------------------------------------------------------------------------

    def _reshuffle(self) -> None:
        rng = np.random.default_rng([self.seed, self._generation])
        self._order = rng.permutation(self.num_samples)

    @property
    def generation(self) -> int:
        """Calls of `on_epoch_end` so far. With `seed` it decides the order, crops and
        augmentation of the coming batches; `siamese_cd.training.resume` sets it back on
        resuming."""
        return self._generation

    @generation.setter
    def generation(self, value: int) -> None:
        self._generation = int(value)
        if self.shuffle:
            self._reshuffle()

    def on_epoch_end(self) -> None:
        # Keras also calls this once before the first epoch; a new permutation each call is fine.
        self._generation += 1
        if self.shuffle:
            self._reshuffle()

    # -- samples and batches ---------------------------------------------------------------------

    def read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Decode scene `index` (in file order, as in `pairs`) whole, checking that sizes agree.

        Returns:
            ``(t1, t2, mask)``: (H, W, C) images in their file's pixel type and an (H, W) uint8
            0/1 mask, or None without labels. Read from the cache when there is one.

        Raises:
            ImageReadError: if a file cannot be decoded or the three sizes differ; the message
                names the files and their shapes.
        """
        return self.source.read_pair(index)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample `index` as stored, without augmentation.

        Samples are numbered like batches: scenes in file order, or with `tile_size` tiles
        (scene by scene, row by row; ``num_samples`` of them). With `crop_size` the central
        crop of the scene is returned, so that the result is deterministic.

        Returns:
            ``(t1, t2, mask)`` of shapes (H, W, C), (H, W, C) and (H, W, 1): the images in
            their stored pixel type (raw, as batches hold them), the mask float32 0/1, or None
            without labels.
        """
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample {index} out of range for {self.num_samples} samples")
        ((scene, (t1, t2, mask)),) = self.source.read_samples([index], rng=None)
        out1, out2 = np.empty(t1.shape, t1.dtype), np.empty(t2.shape, t2.dtype)
        self._fill(out1, t1, self.pairs[scene].t1)
        self._fill(out2, t2, self.pairs[scene].t2)
        return out1, out2, mask[..., None].astype(np.float32) if mask is not None else None

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        samples = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if self._whole_cached_scenes() and self.cache.uniform_size(samples) is not None:
            return self._cached_batch(samples)
        if self._whole_raw_scenes():
            batch = self._direct_batch(samples)
            if batch is not None:
                return batch
        rng = np.random.default_rng([self.seed, self._generation, index, 1])
        return self._sampled_batch(samples, rng)

    def change_fraction(self, progress: bool = True) -> float:
        """Fraction of changed pixels over every sample's mask, read in one streaming pass.

        With `tile_size` the pixels of every tile count, as the model sees them (pixels in
        overlapping tiles count once per tile); otherwise whole scenes count. The result is
        kept, so later calls are free.

        Raises:
            DatasetError: if the dataset has no labels.
        """
        if self._change_fraction is None:
            self._change_fraction = self.source.change_fraction(progress=progress)
        return self._change_fraction

    # -- tf.data ---------------------------------------------------------------------------------

    def as_tf_dataset(
        self,
        *,
        prefetch: bool = True,
        deterministic: bool | None = None,
        shard: tuple[int, int] | None = None,
    ):
        """The same samples as a `tf.data.Dataset`, decoded by TensorFlow in parallel.

        Elements are the batches of this dataset, ``((t1, t2), mask)`` or ``((t1, t2),)``,
        with the same raw pixels, crops, tiles and augmentation. Use it for `tf.distribute` or
        for the fastest input path: only paths live in the graph, PNG, JPEG and BMP files are
        decoded by TensorFlow in parallel outside the GIL (other formats and the cache are read
        by the `SampleSource` in `tf.numpy_function`), and batches are prefetched. Each
        iteration is an epoch, reshuffled when `shuffle` is on.

        Without shuffling or augmentation the batches equal this dataset's own, value for
        value (JPEG may differ by rounding). With `shuffle` the order is drawn by tf.data
        (scenes are shuffled, and with `tile_size` a scene's tiles stay together), and crops
        and augmentation draw from their own seeded stream.

        Args:
            prefetch: prefetch batches (``tf.data.AUTOTUNE``).
            deterministic: keep the order of samples exactly. Defaults to True without
                `shuffle`; with `shuffle`, False lets a sample decoded early overtake a slow
                one, which is faster but makes the order depend on timing too. A sample's
                crop and augmentation do not depend on it.
            shard: ``(count, index)`` reads only scenes ``index, index + count, ...``, one
                worker's share: the others' files are never opened. None reads all.

        Example:
            >>> import tempfile
            >>> from PIL import Image
            >>> split = Path(tempfile.mkdtemp())
            >>> for folder in ("time1", "time2", "label"):
            ...     (split / folder).mkdir()
            ...     for stem in ("a", "b", "c"):
            ...         image = np.full((32, 32), 255, np.uint8)
            ...         Image.fromarray(image).save(split / folder / f"{stem}.png")
            >>> data = PairedImageDataset(split, batch_size=2)
            >>> [tuple(t1.shape) for (t1, t2), mask in data.as_tf_dataset()]
            [(2, 32, 32, 3), (1, 32, 32, 3)]
            >>> [len(t1) for (t1, t2), mask in data.as_tf_dataset(shard=(2, 1))]  # scene b
            [1]
        """
        from siamese_cd.data.pipeline import tf_pipeline
        from siamese_cd.data.readers.undecodable import remember_source

        scenes = None
        if shard is not None:
            count, index = shard
            if not 0 <= index < count:
                raise DatasetError(f"shard must be (count, index) with 0 <= index < count: {shard}")
            scenes = np.arange(len(self.pairs))[index::count]
        dataset = tf_pipeline.build(
            self, prefetch=prefetch, deterministic=deterministic, scenes=scenes
        )
        remember_source(dataset, self.source)  # to name a file TensorFlow cannot decode
        return dataset
