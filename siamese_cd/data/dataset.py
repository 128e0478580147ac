"""`PairedImageDataset`: batches of co-registered image pairs and change masks, read from disk.

Only file paths (and, for tiles, scene sizes) live in memory; each batch is decoded when it is
asked for, so memory stays flat however many pairs a split holds. The same samples are
available three ways: as a Keras `PyDataset` (``model.fit(dataset)``, decoded by Pillow in
worker threads), as a `tf.data.Dataset` (`PairedImageDataset.as_tf_dataset`, decoded by
TensorFlow), and from a decoded cache on disk (``cache_dir=``), the fastest.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

from siamese_cd.data.augment import Augment
from siamese_cd.data.cache import DecodedCache
from siamese_cd.data.decoding import (
    DEFAULT_LABEL_THRESHOLD,
    Window,
    check_bands,
    check_grayscale,
    decode_into,
    image_size,
    pixel_scale,
    read_image,
    read_label,
    uses_rasterio,
)
from siamese_cd.data.pairing import Pair, PairList, pair_by_stem, pair_split, pairs_from_csv
from siamese_cd.data.windows import TileIndex, as_size, center_window, random_window
from siamese_cd.errors import DatasetError, ImageReadError

NORMALIZATIONS = ("unit", "standardize")


def default_workers() -> int:
    """Decoding threads for `fit`: one per usable core, at most 8 (decoding releases the GIL)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _aligned_empty(shape: tuple[int, ...], dtype=np.float32, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on an `align`-byte boundary.

    TensorFlow adopts 64-byte aligned, contiguous NumPy buffers without copying them, so
    aligned batches cross from Python to TensorFlow for free.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes].view(dtype).reshape(shape)


class _BatchBuffers:
    """Recycles batch arrays that nothing references any more.

    A fresh 12 MB array costs page faults and zeroing by the kernel on every batch, about as
    much as filling it. An array is handed out again only when the pool holds the last
    references to it and to its memory (CPython reference counts), so a batch still held by
    Keras, TensorFlow (which adopts aligned arrays without copying) or the caller is never
    overwritten.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"limit": self.limit}  # buffers and locks stay in their process

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["limit"])

    def get(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        with self._lock:
            for array in self._arrays:
                # References: the list, `array` and the call's argument; the memory's owner is
                # referenced by `array` alone.
                if (
                    array.shape == shape
                    and array.dtype == dtype
                    and sys.getrefcount(array) == 3
                    and sys.getrefcount(array.base) == 2
                ):
                    return array
            array = _aligned_empty(shape, dtype)
            if len(self._arrays) < self.limit:
                self._arrays.append(array)
            return array


def _shape_error(pair: Pair, shapes: Sequence[tuple[int, ...]]) -> ImageReadError:
    listing = ", ".join(
        f"{role} {path} {shape}" for (role, path), shape in zip(pair.files(), shapes)
    )
    return ImageReadError(f"sample {pair.stem!r}: sizes differ: {listing}")


def _pack(t1: np.ndarray, t2: np.ndarray, mask: np.ndarray | None) -> tuple:
    """A batch as Keras reads it: ``((t1, t2), mask)``, or ``((t1, t2),)`` without labels."""
    if mask is None:
        # A 1-tuple, so Keras reads (t1, t2) as the inputs and not as (x, y).
        return ((t1, t2),)
    return (t1, t2), mask


class PairedImageDataset(keras.utils.PyDataset):
    """Batches `((t1, t2), mask)` from a change-detection split, pairing files by name.

    **Where the files are.** `root` is a split folder in one of the known layouts, detected
    automatically: SYSU-CD (``time1/ time2/ label/``), LEVIR-CD and WHU-CD (``A/ B/ label/``),
    WHU-CD (``prev/ curr/ label/``), CDD (``A/ B/ OUT/``). Or give the folders (`t1_dir`,
    `t2_dir`, `label_dir`), or a CSV file of ``t1,t2,label`` rows as `root`. Files are matched
    by stem, ignoring the extension (``time1/7.png`` with ``label/7.tif``); a file without its
    counterparts is an error naming it (`on_missing`).

    **What a batch holds.** ``t1`` and ``t2`` of shape (B, H, W, C) and ``mask`` of shape
    (B, H, W, 1) float32. With ``normalization="unit"`` (the default) the images are the
    files' own integer pixels, uint8 (or uint16 for 16-bit files): `SiameseChangeModel`
    divides integer inputs by their type's maximum (255 or 65535) in its first step, on the
    device, so four times fewer bytes are made and moved per batch than in float32. Batches are
    float32 instead when scaling must happen here: with ``normalization="standardize"``
    (``(pixel - mean) / std`` per band), with radiometric augmentation (which works on [0, 1]
    floats), or with ``float_batches=True`` (images divided by 255 or 65535 into [0, 1]), for
    models that do not scale integer pixels themselves (or add
    ``keras.layers.Rescaling(1 / 255)`` to such a model). `raw_pixels` tells which.
    Masks are 0/1: values at or above `label_threshold` are change, RGB masks count their
    brightest band, and PNG/TIFF masks holding only 0 and 1 are read as 0/1 masks. Without
    labels (``label_dir=None``) a batch is ``((t1, t2),)``, inputs only, for prediction.

    **Pixels.** RGB, grayscale (repeated to 3 bands, or kept as 1 with ``grayscale="keep"``)
    and RGBA (alpha dropped, with one warning) in 8 or 16 bits; multi-band GeoTIFF through
    rasterio (``pip install 'siamese_cd[geo]'``), with `bands` to choose bands.

    **Samples.** By default one sample per scene, whole. ``crop_size`` takes one random crop
    per scene and epoch (training on large scenes). ``tile_size`` cuts every scene into
    deterministic tiles (validation and test): a 1024² scene with ``tile_size=256`` gives 16
    samples. ``len(dataset.pairs)`` counts scenes; `num_samples` counts samples; `sample`
    and batches number samples (tiles, with `tile_size`).

    **Speed.** ``fit`` decodes batches in `workers` threads; plain PNGs are decoded by libpng
    straight into the batch arrays, outside the GIL. `as_tf_dataset` gives the same
    samples as a `tf.data.Dataset` decoded by TensorFlow. ``cache_dir`` decodes every scene
    once into a compact store on disk (see `siamese_cd.data.cache`), rebuilt automatically
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
        bands: bands to read, counted from 1 as in GDAL, e.g. ``(4, 3, 2)``; None reads all
            (minus alpha).
        grayscale: ``"expand"`` (default) repeats 1-band images to 3 bands; ``"keep"`` keeps
            1 band.
        normalization: ``"unit"`` (default) divides by the pixel type's maximum;
            ``"standardize"`` computes ``(pixel - mean) / std`` per band.
        mean: per-band means for ``"standardize"``, in raw pixel units (e.g. 0-255). Leave
            None and call `compute_stats` to measure them on this split.
        std: per-band standard deviations for ``"standardize"``, in raw pixel units.
        float_batches: give float32 images scaled to [0, 1] even where integer pixels could
            be given (``normalization="unit"``), for models that do not scale them.
        cache_dir: folder of decoded caches; built on first use (with a progress bar).
        workers: decoding threads used by `fit`; defaults to one per core, at most 8, or 1
            when reading a cache without augmentation (one thread keeps up there).
        use_multiprocessing: decode in processes instead of threads.
        max_queue_size: batches prepared ahead; memory is about
            ``(max_queue_size + workers)`` batches.
        progress: show progress bars for long work (tile scanning, cache building).

    Example:
        >>> train = PairedImageDataset("data/LEVIR-CD/train", batch_size=16, crop_size=256,
        ...                            augment=True, shuffle=True, seed=0)  # doctest: +SKIP
        >>> val = PairedImageDataset("data/LEVIR-CD/val", tile_size=256)  # doctest: +SKIP
        >>> len(val.pairs), val.num_samples  # 64 scenes of 1024² -> 16 tiles each  # doctest: +SKIP
        (64, 1024)
        >>> (t1, t2), mask = train[0]  # doctest: +SKIP
        >>> t1.shape, t1.dtype, mask.shape, mask.dtype  # doctest: +SKIP
        ((16, 256, 256, 3), dtype('uint8'), (16, 256, 256, 1), dtype('float32'))
        >>> model.fit(train, validation_data=val)  # doctest: +SKIP
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
        bands: Sequence[int] | None = None,
        grayscale: str = "expand",
        normalization: str = "unit",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        float_batches: bool = False,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
        use_multiprocessing: bool = False,
        max_queue_size: int = 4,
        progress: bool = True,
    ):
        if workers is None:
            # Reading an un-augmented cache is a copy and a division: one thread keeps up, and
            # more only contend for the GIL and the cores the model needs.
            workers = 1 if cache_dir is not None and not augment else default_workers()
        super().__init__(
            workers=workers,
            use_multiprocessing=use_multiprocessing,
            max_queue_size=max_queue_size,
        )
        if batch_size < 1:
            raise DatasetError(f"batch_size must be at least 1, got {batch_size}")
        if root is not None and (t1_dir or t2_dir or label_dir):
            raise DatasetError("give either a split folder or t1_dir/t2_dir/label_dir, not both")
        if root is not None and Path(root).suffix.lower() == ".csv":
            self.pairs: PairList = pairs_from_csv(root, on_missing=on_missing)
        elif root is not None:
            self.pairs = pair_split(root, on_missing=on_missing)
        elif t1_dir is not None and t2_dir is not None:
            self.pairs = pair_by_stem(t1_dir, t2_dir, label_dir, on_missing=on_missing)
        else:
            raise DatasetError("give a split folder, or both t1_dir and t2_dir")
        if crop_size is not None and tile_size is not None:
            raise DatasetError("give crop_size (training) or tile_size (evaluation), not both")
        if tile_stride is not None and tile_size is None:
            raise DatasetError("tile_stride needs tile_size")
        if normalization not in NORMALIZATIONS:
            raise DatasetError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        if (mean is None) != (std is None):
            raise DatasetError("give both mean and std, or neither")
        if isinstance(label_threshold, bool) or not isinstance(label_threshold, (int, np.integer)):
            raise DatasetError(f"label_threshold must be an int, got {label_threshold!r}")
        if label_threshold < 1:
            raise DatasetError(
                f"label_threshold must be at least 1 (0 would mark every pixel as change), "
                f"got {label_threshold}"
            )
        if augment is not None and not isinstance(augment, (bool, Augment)):
            raise DatasetError(f"augment must be True, False or an Augment, got {augment!r}")

        self.root = Path(root) if root is not None else None
        self.labelled = self.pairs[0].label is not None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment: Augment | None = Augment() if augment is True else (augment or None)
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else seed
        self.label_threshold = label_threshold
        self.bands = check_bands(bands)
        self.grayscale = check_grayscale(grayscale)
        self.normalization = normalization
        self.float_batches = bool(float_batches)
        self.crop_size = as_size(crop_size, "crop_size") if crop_size is not None else None
        self.progress = progress
        self._channels: int | None = None
        self._dtype: np.dtype | None = None
        self._raw_pixels: bool | None = None
        self._mean = self._std = None
        self._change_fraction: float | None = None
        self._generation = 0
        # Enough arrays for every batch Keras keeps in flight: queued, being made, being used.
        self._buffers = _BatchBuffers(3 * (self.max_queue_size + self.workers + 3))

        self.cache: DecodedCache | None = None
        if cache_dir is not None:
            self.cache = DecodedCache.open_or_build(
                cache_dir,
                self.pairs,
                self.read_pair,
                options=self._decode_options(),
                name=self._name(),
                workers=self.workers,
                progress=progress,
            )
            self._channels, self._dtype = self.cache.channels, self.cache.dtype

        self.tiles: TileIndex | None = None
        if tile_size is not None:
            self.tiles = TileIndex(self._scene_sizes(), tile_size, tile_stride)
            small = self.tiles.too_small()
            if small:
                names = ", ".join(f"{self.pairs[i].t1} {self._size(i)}" for i in small[:10])
                raise DatasetError(
                    f"{len(small)} scene(s) smaller than tile_size {self.tiles.tile}: {names}"
                )
        if mean is not None:
            self.set_stats(mean, std)
        if self.augment is not None and self.augment.needs_rgb and self.channels != 3:
            raise DatasetError(
                f"{self.pairs[0].t1}: Augment hue/saturation need 3-band images, these have "
                f"{self.channels}"
            )
        self._order = np.arange(self.num_samples)
        if shuffle:
            self._reshuffle()

    # -- description ---------------------------------------------------------------------------

    def _name(self) -> str:
        if self.root is not None:
            return self.root.stem if self.root.suffix.lower() == ".csv" else self.root.name
        return self.pairs[0].t1.parent.parent.name or "split"

    def _decode_options(self) -> dict:
        return {
            "bands": list(self.bands) if self.bands else None,
            "grayscale": self.grayscale,
            "label_threshold": self.label_threshold,
            "labelled": self.labelled,
        }

    @property
    def num_samples(self) -> int:
        """Samples per epoch: tiles with `tile_size`, otherwise one per scene."""
        return len(self.tiles) if self.tiles is not None else len(self.pairs)

    @property
    def channels(self) -> int:
        """Bands per image in the batches, read from the first sample (e.g. 3 for RGB).

        Pass it to the model: ``SiameseChangeModel(in_channels=dataset.channels)``.
        """
        if self._channels is None:
            first = read_image(self.pairs[0].t1, bands=self.bands, grayscale=self.grayscale)
            self._channels, self._dtype = first.shape[-1], first.dtype
        return self._channels

    @property
    def raw_pixels(self) -> bool:
        """Whether batch images are the files' integer pixels (uint8 or uint16), not float32.

        True with ``normalization="unit"`` and 8- or 16-bit images, unless radiometric
        augmentation or ``float_batches=True`` asks for float32. `SiameseChangeModel` takes
        either: it divides integer pixels by their type's maximum, as this dataset would.
        """
        if self._raw_pixels is None:
            radiometric = self.augment is not None and self.augment.radiometric
            self._raw_pixels = (
                self.normalization == "unit"
                and not self.float_batches
                and not radiometric
                and self._sample_dtype() in (np.uint8, np.uint16)
            )
        return self._raw_pixels

    @property
    def pixel_dtype(self) -> np.dtype:
        """Type of the batch images: the files' pixel type if `raw_pixels`, else float32."""
        return self._sample_dtype() if self.raw_pixels else np.dtype(np.float32)

    @property
    def mean(self) -> np.ndarray | None:
        """Per-band means of "standardize" normalisation, in raw pixel units, or None."""
        return self._mean

    @property
    def std(self) -> np.ndarray | None:
        """Per-band standard deviations of "standardize" normalisation, or None."""
        return self._std

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

    def on_epoch_end(self) -> None:
        # Keras also calls this once before the first epoch; a new permutation each call is fine.
        self._generation += 1
        if self.shuffle:
            self._reshuffle()

    # -- reading scenes --------------------------------------------------------------------------

    def _size(self, index: int) -> tuple[int, int]:
        if self.cache is not None:
            return tuple(int(v) for v in self.cache.shapes[index])
        return image_size(self.pairs[index].t1)

    def _scene_sizes(self) -> np.ndarray:
        """(height, width) of every scene, from the cache or from the t1 file headers."""
        if self.cache is not None:
            return self.cache.shapes.astype(np.int64)
        sizes = np.zeros((len(self.pairs), 2), np.int64)
        for i in tqdm(
            range(len(self.pairs)),
            desc="Reading scene sizes",
            unit="scene",
            disable=not self.progress or len(self.pairs) < 1000,
        ):
            sizes[i] = self._size(i)
        return sizes

    def read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Decode scene `index` (in file order, as in `pairs`) whole, checking that sizes agree.

        Returns:
            ``(t1, t2, mask)``: (H, W, C) images in their file's pixel type and an (H, W) uint8
            0/1 mask, or None without labels. Read from the cache when there is one.

        Raises:
            ImageReadError: if a file cannot be decoded or the three sizes differ; the message
                names the files and their shapes.
        """
        if self.cache is not None:
            return self.cache.read(index)
        pair = self.pairs[index]
        t1 = read_image(pair.t1, bands=self.bands, grayscale=self.grayscale)
        t2 = read_image(pair.t2, bands=self.bands, grayscale=self.grayscale)
        mask = read_label(pair.label, self.label_threshold) if pair.label is not None else None
        shapes = [t1.shape, t2.shape] + ([mask.shape] if mask is not None else [])
        if len({s[:2] for s in shapes}) > 1:
            raise _shape_error(pair, shapes)
        return t1, t2, mask

    def _read_windows(self, index: int, windows: list[Window]) -> list[tuple]:
        """Several windows of scene `index`, reading each file once.

        Pillow decodes a file whole, so it is decoded once and cut; rasterio and the cache read
        just the windows' rows from disk.
        """
        if self.cache is not None:
            return [self.cache.read(index, window) for window in windows]
        pair = self.pairs[index]
        if not any(uses_rasterio(path) for _, path in pair.files()):
            t1, t2, mask = self.read_pair(index)
            return [
                (
                    t1[y : y + h, x : x + w],
                    t2[y : y + h, x : x + w],
                    mask[y : y + h, x : x + w] if mask is not None else None,
                )
                for y, x, h, w in windows
            ]
        sizes = [image_size(path) for _, path in pair.files()]
        if len(set(sizes)) > 1:
            raise _shape_error(pair, sizes)
        options = {"bands": self.bands, "grayscale": self.grayscale}
        return [
            (
                read_image(pair.t1, window=window, **options),
                read_image(pair.t2, window=window, **options),
                read_label(pair.label, self.label_threshold, window=window)
                if pair.label is not None
                else None,
            )
            for window in windows
        ]

    def _locate(self, sample: int, rng: np.random.Generator | None) -> tuple[int, Window | None]:
        """Scene and window of `sample`: a tile, a crop (random, or central without rng)."""
        if self.tiles is not None:
            return self.tiles.locate(sample)
        if self.crop_size is None:
            return sample, None
        height, width = self._size(sample)
        if height < self.crop_size[0] or width < self.crop_size[1]:
            raise ImageReadError(
                f"{self.pairs[sample].t1}: scene of size {(height, width)} is smaller than "
                f"crop_size {self.crop_size}"
            )
        if rng is None:
            return sample, center_window(height, width, self.crop_size)
        return sample, random_window(height, width, self.crop_size, rng)

    def _read_samples(self, samples: Sequence[int], rng: np.random.Generator | None) -> list:
        """Integer ``(t1, t2, mask)`` arrays of `samples`, each scene read once."""
        located = [self._locate(int(s), rng) for s in samples]
        groups: dict[int, list[int]] = {}
        for position, (scene, _) in enumerate(located):
            groups.setdefault(scene, []).append(position)
        out: list = [None] * len(located)
        for scene, positions in groups.items():
            windows = [located[p][1] for p in positions]
            if windows[0] is None:
                arrays = self.read_pair(scene)
                for p in positions:
                    out[p] = arrays
            else:
                for p, arrays in zip(positions, self._read_windows(scene, windows)):
                    out[p] = arrays
        return [(scene, arrays) for (scene, _), arrays in zip(located, out)]

    # -- normalisation ---------------------------------------------------------------------------

    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Set the per-band mean and std of "standardize" normalisation, in raw pixel units.

        Raises:
            DatasetError: if their lengths differ from `channels` or a std is not positive.
        """
        mean_array = np.asarray(mean, dtype=np.float64).reshape(-1)
        std_array = np.asarray(std, dtype=np.float64).reshape(-1)
        if len(mean_array) != self.channels or len(std_array) != self.channels:
            raise DatasetError(
                f"mean and std need one value per band: {self.channels} band(s) in "
                f"{self.pairs[0].t1}, got {len(mean_array)} mean(s) and {len(std_array)} std(s)"
            )
        if not (std_array > 0).all():
            raise DatasetError(f"std must be positive for every band, got {std_array.tolist()}")
        self._mean, self._std = mean_array, std_array

    def compute_stats(self, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mean and std of every pixel of both dates, in one streaming pass.

        The result is stored for "standardize" normalisation and returned. Give the training
        split's values to the validation split: ``PairedImageDataset(..., mean=train.mean,
        std=train.std, normalization="standardize")``.

        Returns:
            ``(mean, std)``, float64 arrays of one value per band, in raw pixel units.
        """
        count = 0
        total = np.zeros(self.channels, np.float64)
        squares = np.zeros(self.channels, np.float64)
        for i in tqdm(
            range(len(self.pairs)),
            desc="Computing band statistics",
            unit="pair",
            disable=not progress,
        ):
            t1, t2, _ = self.read_pair(i)
            for image in (t1, t2):
                pixels = image.reshape(-1, image.shape[-1]).astype(np.float64)
                count += len(pixels)
                total += pixels.sum(axis=0)
                squares += np.einsum("ij,ij->j", pixels, pixels)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        flat = np.flatnonzero(std == 0)
        if len(flat):
            raise DatasetError(
                f"band(s) {(flat + 1).tolist()} are constant over the split (std 0); "
                "select other bands with bands=, or use normalization='unit'"
            )
        self.set_stats(mean, std)
        return mean, std

    def _normalizer(self, dtype: np.dtype, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """``(offset, divisor)`` per band, so that a batch is ``(pixels - offset) / divisor``."""
        if self.normalization == "unit":
            scale = np.float32(pixel_scale(dtype, path))
            return np.zeros(1, np.float32), np.full(1, scale, np.float32)
        if self._mean is None:
            raise DatasetError(
                "normalization='standardize' needs mean= and std=, or a call to "
                "dataset.compute_stats() before use"
            )
        return self._mean.astype(np.float32), self._std.astype(np.float32)

    def _fill(self, out: np.ndarray, image: np.ndarray, path: Path, rng=None) -> None:
        """Write one date into a batch slot.

        An integer slot (`raw_pixels`) gets the pixels as stored; a float32 slot gets them
        jittered (given `rng`) and normalised.
        """
        if out.dtype != np.float32:
            if image.dtype != out.dtype:
                raise ImageReadError(
                    f"{path}: {image.dtype} pixels, but this dataset's batches hold "
                    f"{out.dtype} pixels (the type of {self.pairs[0].t1}); store every image "
                    "with one bit depth, or use float_batches=True"
                )
            np.copyto(out, image)
            return
        offset, divisor = self._normalizer(image.dtype, path)
        if rng is not None and self.augment is not None and self.augment.radiometric:
            scale = np.float32(pixel_scale(image.dtype, path))
            np.divide(image, scale, out=out, dtype=np.float32)
            self.augment.jitter(out, rng)
            if self.normalization == "unit":
                return
            out *= scale
            out -= offset
            out /= divisor
            return
        if self.normalization == "unit":
            np.divide(image, divisor[0], out=out, dtype=np.float32)
        else:
            np.subtract(image, offset, out=out, dtype=np.float32)
            out /= divisor

    # -- samples and batches ---------------------------------------------------------------------

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample `index` as the model sees it, without augmentation.

        Samples are numbered like batches: scenes in file order, or with `tile_size` tiles
        (scene by scene, row by row; ``num_samples`` of them). With `crop_size` the central
        crop of the scene is returned, so that the result is deterministic.

        Returns:
            ``(t1, t2, mask)`` as float32 arrays of shape (H, W, C), (H, W, C) and (H, W, 1),
            the images normalised (in [0, 1] for ``"unit"``) even when batches hold integer
            pixels; mask is None without labels.
        """
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample {index} out of range for {self.num_samples} samples")
        ((scene, (t1, t2, mask)),) = self._read_samples([index], rng=None)
        out1 = np.empty(t1.shape, np.float32)
        out2 = np.empty(t2.shape, np.float32)
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
        read = self._read_samples(samples, rng)
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
        return _pack(t1_batch, t2_batch, mask_batch)

    def _whole_scenes(self) -> bool:
        """Whether a sample is a whole scene as stored: no crop, tile or augmentation."""
        return self.tiles is None and self.crop_size is None and self.augment is None

    def _whole_raw_scenes(self) -> bool:
        """Whether batches are whole scenes from files, pixels as stored (see `_direct_batch`)."""
        return (
            self.cache is None and self._whole_scenes() and self.bands is None and self.raw_pixels
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
                for path, batch in ((pair.t1, t1_batch), (pair.t2, t2_batch)):
                    if decode_into(path, batch[k], grayscale=self.grayscale) is not None:
                        return None
                if mask_batch is not None:
                    mask = read_label(pair.label, self.label_threshold)
            if mask_batch is not None:
                if mask.shape != shape[:2]:
                    return None
                np.copyto(mask_batch[k, ..., 0], mask, casting="unsafe")
        return _pack(t1_batch, t2_batch, mask_batch)

    def _whole_cached_scenes(self) -> bool:
        """Whether batches are whole scenes from the cache, as stored (no crop, tile, augment)."""
        return self.cache is not None and self._whole_scenes()

    def _cached_batch(self, samples: np.ndarray):
        """A batch of same-size cached scenes: read straight into one array, scaled at once."""
        count = len(samples)
        height, width = self.cache.uniform_size(samples)
        image = (count, height, width, self.cache.channels)
        raw = (
            self._buffers.get(image, self.cache.dtype),
            self._buffers.get(image, self.cache.dtype),
        ) + ((self._buffers.get((count, height, width), np.uint8),) if self.labelled else ())
        raw_t1, raw_t2, raw_mask = self.cache.read_batch(samples, out=raw)
        if self.pixel_dtype == self.cache.dtype:
            t1_batch, t2_batch = raw_t1, raw_t2  # the stored pixels are the batch
        else:
            t1_batch = self._buffers.get(image, self.pixel_dtype)
            t2_batch = self._buffers.get(image, self.pixel_dtype)
            self._fill(t1_batch, raw_t1, self.pairs[int(samples[0])].t1)
            self._fill(t2_batch, raw_t2, self.pairs[int(samples[0])].t2)
        mask_batch = None
        if self.labelled:
            mask_batch = self._buffers.get((count, height, width, 1))
            np.copyto(mask_batch[..., 0], raw_mask, casting="unsafe")
        return _pack(t1_batch, t2_batch, mask_batch)

    def change_fraction(self, progress: bool = True) -> float:
        """Fraction of changed pixels over every sample's mask, read in one streaming pass.

        With `tile_size` the pixels of every tile count, as the model sees them (pixels in
        overlapping tiles count once per tile); otherwise whole scenes count. The result is
        kept, so later calls are free.

        Raises:
            DatasetError: if the dataset has no labels.
        """
        if not self.labelled:
            raise DatasetError("change_fraction needs labels; this dataset has none")
        if self._change_fraction is None:
            changed = total = 0
            for i in tqdm(
                range(len(self.pairs)), desc="Reading masks", unit="mask", disable=not progress
            ):
                if self.cache is not None:
                    mask = self.cache.read(i)[2]
                else:
                    mask = read_label(self.pairs[i].label, self.label_threshold)
                if self.tiles is None:
                    changed += int(np.count_nonzero(mask))
                    total += mask.size
                    continue
                # Sums over tiles from an integral image, so overlaps cost nothing extra.
                integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
                integral[1:, 1:] = mask.cumsum(0, dtype=np.int64).cumsum(1)
                for y, x, h, w in self.tiles.windows_of(i):
                    changed += int(
                        integral[y + h, x + w]
                        - integral[y, x + w]
                        - integral[y + h, x]
                        + integral[y, x]
                    )
                    total += h * w
            self._change_fraction = changed / total
        return self._change_fraction

    # -- tf.data ---------------------------------------------------------------------------------

    def as_tf_dataset(self, *, prefetch: bool = True, deterministic: bool | None = None):
        """The same samples as a `tf.data.Dataset`, decoded by TensorFlow in parallel.

        Elements are the batches of this dataset, ``((t1, t2), mask)`` or ``((t1, t2),)``,
        with the same decoding, normalisation, crops, tiles and augmentation. Use it for
        `tf.distribute` or for the fastest input path: only paths live in the graph, PNG,
        JPEG and BMP files are decoded by TensorFlow in parallel outside the GIL (other formats
        and the cache are read by the NumPy readers in `tf.numpy_function`), and batches are
        prefetched. Each iteration is an epoch, reshuffled when `shuffle` is on.

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

        Example:
            >>> ds = PairedImageDataset("data/synthetic/train", shuffle=True, augment=True,
            ...                         seed=0).as_tf_dataset()  # doctest: +SKIP
            >>> model.fit(ds, epochs=10)  # doctest: +SKIP
        """
        from siamese_cd.data import tf_pipeline

        return tf_pipeline.build(self, prefetch=prefetch, deterministic=deterministic)

    def _sample_dtype(self) -> np.dtype:
        self.channels  # noqa: B018 - reads the first sample
        return self._dtype

    def _augment_numpy(self, t1, t2, mask, seed):
        """Augment and normalise one sample; called by `as_tf_dataset` through numpy_function."""
        rng = np.random.default_rng([int(seed[0]) & 0x7FFFFFFFFFFFFFFF, int(seed[1])])
        mask = mask if self.labelled else None
        t1, t2, mask = self.augment(t1, t2, mask, rng)
        out1 = np.empty(t1.shape, self.pixel_dtype)
        out2 = np.empty(t2.shape, self.pixel_dtype)
        self._fill(out1, t1, self.pairs[0].t1, rng)
        self._fill(out2, t2, self.pairs[0].t2, rng)
        if mask is None:
            mask = np.zeros(t1.shape[:2], np.uint8)
        return out1, out2, mask
