"""`SampleSource`: the samples of a split as raw arrays, the one place their rules live.

A source turns a list of pairs into samples: it knows each scene's size, reads a scene whole
(checking that its three files agree in size) or in windows, says which scene and window a
sample is (a whole scene, a random or central crop, or a tile), and binarises labels. Pixels
come back as stored (uint8, uint16 or float32); masks as (H, W) uint8 arrays of 0 and 1.
`PairedImageDataset` batches, shuffles and augments its samples; its `as_tf_dataset` reads
the same samples by the same rules.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from siamese_cd.data.layouts.registry import pair_split
    >>> split = Path(tempfile.mkdtemp())
    >>> for folder, value in (("time1", 10), ("time2", 200), ("label", 255)):
    ...     (split / folder).mkdir()
    ...     Image.fromarray(np.full((32, 48), value, np.uint8)).save(split / folder / "a.png")
    >>> source = SampleSource(pair_split(split), tile_size=16)
    >>> source.num_samples, source.channels, source.dtype
    (6, 3, dtype('uint8'))
    >>> [(scene, t1.shape, mask.max()) for scene, (t1, t2, mask) in source.read_samples([4])]
    [(0, (16, 16, 3), np.uint8(1))]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from siamese_cd.data.layouts.pairing import Pair, PairList
from siamese_cd.data.pipeline.cache import DecodedCache
from siamese_cd.data.readers.decoding import (
    DEFAULT_LABEL_THRESHOLD,
    Window,
    check_bands,
    check_grayscale,
    image_size,
    read_image,
    read_label,
    uses_rasterio,
)
from siamese_cd.data.readers.georeference import check_same_grid
from siamese_cd.data.sampling.crops import MaskMemory, check_scene_sampling
from siamese_cd.data.sampling.windows import (
    TileIndex,
    as_size,
    center_window,
    cut_windows,
    random_window,
    tile_starts,
)
from siamese_cd.errors import DatasetError, ImageReadError

Arrays = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]
# Random crops drawn per sample at most, looking for `min_change` changed pixels.
MAX_DRAWS = 20


def _shape_error(pair: Pair, shapes: Sequence[tuple[int, ...]]) -> ImageReadError:
    listing = ", ".join(
        f"{role} {path} {shape}" for (role, path), shape in zip(pair.files(), shapes)
    )
    return ImageReadError(f"sample {pair.stem!r}: sizes differ: {listing}")


def check_label_threshold(threshold: int) -> int:
    """Validate a label threshold: an int of at least 1."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
        raise DatasetError(f"label_threshold must be an int, got {threshold!r}")
    if threshold < 1:
        raise DatasetError(
            f"label_threshold must be at least 1 (0 would mark every pixel as change), "
            f"got {threshold}"
        )
    return int(threshold)


class SampleSource:
    """The samples of a split as raw ``(t1, t2, mask)`` arrays.

    Args:
        pairs: the split's pairs (`siamese_cd.data.layouts.pairing`).
        bands: bands to read, counted from 1; None reads all (minus a PNG's alpha; every band
            of a GeoTIFF, see `siamese_cd.data.readers.decoding.drops_alpha`).
        grayscale: ``"expand"`` or ``"keep"`` (see `siamese_cd.data.readers.decoding.read_image`).
        label_threshold: label values at or above it are change.
        crop_size: side or ``(height, width)`` of one crop per scene (random given a
            generator, central otherwise).
        tile_size: side or ``(height, width)`` of deterministic tiles covering each scene.
        tile_stride: step between tiles (default `tile_size`).
        samples_per_scene: crops per scene and epoch with `crop_size` (default 1): an epoch
            is ``samples_per_scene x scenes`` samples, so a few large scenes train like many
            tiles. Sample ``k`` is a crop of scene ``k // samples_per_scene``.
        min_change: with `crop_size`, draw random crops until one holds at least this share
            of changed pixels, at most `MAX_DRAWS` times (then the last draw is kept); 0 takes
            the first draw. Needs labels.
        cache_dir: folder of decoded caches (`siamese_cd.data.pipeline.cache`); None reads
            the files.
        name: readable name of the split, for the cache's folder.
        workers: threads that build the cache.
        progress: show progress bars for long work.

    Raises:
        DatasetError: for bad options, or scenes smaller than `tile_size`.
    """

    def __init__(
        self,
        pairs: PairList | Sequence[Pair],
        *,
        bands: Sequence[int] | None = None,
        grayscale: str = "expand",
        label_threshold: int = DEFAULT_LABEL_THRESHOLD,
        crop_size: int | tuple[int, int] | None = None,
        tile_size: int | tuple[int, int] | None = None,
        tile_stride: int | tuple[int, int] | None = None,
        samples_per_scene: int = 1,
        min_change: float = 0.0,
        cache_dir: str | Path | None = None,
        name: str = "split",
        workers: int = 1,
        progress: bool = True,
    ):
        if crop_size is not None and tile_size is not None:
            raise DatasetError("give crop_size (training) or tile_size (evaluation), not both")
        if tile_stride is not None and tile_size is None:
            raise DatasetError("tile_stride needs tile_size")
        self.pairs = pairs
        self.labelled = pairs[0].label is not None
        # Scenes whose dates were found on one grid (`check_grid`), each checked once.
        self._grid_checked = np.zeros(len(pairs), bool)
        self.bands = check_bands(bands)
        self.grayscale = check_grayscale(grayscale)
        self.label_threshold = check_label_threshold(label_threshold)
        self.crop_size = as_size(crop_size, "crop_size") if crop_size is not None else None
        self.samples_per_scene, self.min_change = check_scene_sampling(
            samples_per_scene, min_change, self.crop_size, self.labelled
        )
        self._masks = MaskMemory()
        self.progress = progress
        self._channels: int | None = None
        self._dtype: np.dtype | None = None
        self.cache: DecodedCache | None = None
        if cache_dir is not None:
            self.cache = DecodedCache.open_or_build(
                cache_dir,
                pairs,
                self.read_pair,
                options=self.decode_options(),
                name=name,
                workers=workers,
                progress=progress,
            )
            self._channels, self._dtype = self.cache.channels, self.cache.dtype
        self.tiles: TileIndex | None = None
        if tile_size is not None:
            self.tiles = TileIndex(self.scene_sizes(), tile_size, tile_stride)
            small = self.tiles.too_small()
            if small:
                names = ", ".join(f"{pairs[i].t1} {self.scene_size(i)}" for i in small[:10])
                raise DatasetError(
                    f"{len(small)} scene(s) smaller than tile_size {self.tiles.tile}: {names}"
                )

    # Whether a pair's files decode whole to its sample (so they may be decoded straight into
    # batches, or by TensorFlow); scene readers (OSCD bands, cropped scenes) set it False.
    files_are_samples = True

    def decode_options(self) -> dict:
        """The options that change the decoded arrays (part of the cache's fingerprint)."""
        return {
            "bands": list(self.bands) if self.bands else None,
            "grayscale": self.grayscale,
            "label_threshold": self.label_threshold,
            "labelled": self.labelled,
            # Every band of a TIFF is kept (`decoding.drops_alpha`); caches built when a band
            # GDAL tags as alpha was dropped have none of this key, so they are not reused.
            "tiff_bands": "all",
        }

    # -- what the samples are --------------------------------------------------------------------

    def _probe(self) -> None:
        first = read_image(self.pairs[0].t1, bands=self.bands, grayscale=self.grayscale)
        self._channels, self._dtype = first.shape[-1], first.dtype

    @property
    def channels(self) -> int:
        """Bands per image, read from the first sample (e.g. 3 for RGB)."""
        if self._channels is None:
            self._probe()
        return self._channels

    @property
    def dtype(self) -> np.dtype:
        """Pixel type of the images as stored, read from the first sample (e.g. uint8)."""
        if self._dtype is None:
            self._probe()
        return self._dtype

    @property
    def num_samples(self) -> int:
        """Samples per epoch: tiles with `tile_size`, otherwise `samples_per_scene` per scene."""
        if self.tiles is not None:
            return len(self.tiles)
        return len(self.pairs) * self.samples_per_scene

    def scene_size(self, index: int) -> tuple[int, int]:
        """(height, width) of scene `index`, from the cache or the t1 file's header."""
        if self.cache is not None:
            return tuple(int(v) for v in self.cache.shapes[index])
        return image_size(self.pairs[index].t1)

    def scene_sizes(self) -> np.ndarray:
        """(height, width) of every scene, as an (N, 2) int64 array."""
        if self.cache is not None:
            return self.cache.shapes.astype(np.int64)
        sizes = np.zeros((len(self.pairs), 2), np.int64)
        for i in tqdm(
            range(len(self.pairs)),
            desc="Reading scene sizes",
            unit="scene",
            disable=not self.progress or len(self.pairs) < 1000,
        ):
            sizes[i] = self.scene_size(i)
        return sizes

    def tile_starts(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Tops and lefts of the tiles of a ``height`` x ``width`` scene, as int32 arrays."""
        (th, tw), (sh, sw) = self.tiles.tile, self.tiles.stride
        return (
            np.asarray(tile_starts(int(height), th, sh), np.int32),
            np.asarray(tile_starts(int(width), tw, sw), np.int32),
        )

    def locate(self, sample: int, rng: np.random.Generator | None) -> tuple[int, Window | None]:
        """Scene and window of `sample`: a tile, a crop (random, or central without rng), or
        the whole scene (window None)."""
        if self.tiles is not None:
            return self.tiles.locate(sample)
        if self.crop_size is None:
            return sample, None
        scene = sample // self.samples_per_scene
        height, width = self.scene_size(scene)
        if height < self.crop_size[0] or width < self.crop_size[1]:
            raise ImageReadError(
                f"{self.pairs[scene].t1}: scene of size {(height, width)} is smaller than "
                f"crop_size {self.crop_size}"
            )
        if rng is None:
            return scene, center_window(height, width, self.crop_size)
        if self.min_change > 0:
            return scene, self.changed_window(scene, rng)
        return scene, random_window(height, width, self.crop_size, rng)

    def changed_window(self, scene: int, rng: np.random.Generator) -> Window:
        """A random `crop_size` window of `scene` with at least `min_change` changed pixels,
        drawn at most `MAX_DRAWS` times (the last draw is kept if none has enough)."""
        mask = self._masks.get(scene, self.read_mask)
        height, width = mask.shape
        for _ in range(MAX_DRAWS):
            window = random_window(height, width, self.crop_size, rng)
            top, left, h, w = window
            if mask[top : top + h, left : left + w].mean() >= self.min_change:
                break
        return window

    # -- reading ---------------------------------------------------------------------------------

    def check_grid(self, index: int, pair: Pair | None = None) -> None:
        """Raise if the two dates of scene `index` lie on different grids (CRS or transform).

        The rule is `siamese_cd.data.readers.georeference.grid_mismatch`, as for ``predict`` and
        ``siamese-cd check``. Only TIFF headers are read, once per scene; a scene of PNG, JPEG
        or BMP files is passed without opening them. Every read of a scene's files calls it.

        Raises:
            GeoreferenceError: naming both files and what differs.
        """
        if self._grid_checked[index]:
            return
        pair = self.pairs[index] if pair is None else pair
        check_same_grid(pair.t1, pair.t2)
        self._grid_checked[index] = True

    def check_grids(self, scenes: Sequence[int] | None = None) -> None:
        """`check_grid` for each of `scenes` (None: every scene), e.g. when a pipeline that
        reads them later, where an error would lose its type, is built."""
        for index in range(len(self.pairs)) if scenes is None else scenes:
            self.check_grid(int(index))

    def read_label(self, path: Path, window: Window | None = None) -> np.ndarray:
        """A label file as an (H, W) uint8 0/1 mask, by this split's threshold."""
        return read_label(path, self.label_threshold, window=window)

    def read_mask(self, index: int) -> np.ndarray:
        """The 0/1 mask of scene `index`, whole."""
        if self.cache is not None:
            return self.cache.read(index)[2]
        return self.read_label(self.pairs[index].label)

    def read_pair(self, index: int) -> Arrays:
        """Decode scene `index` whole, checking that sizes agree.

        Returns:
            ``(t1, t2, mask)``: (H, W, C) images in their file's pixel type and an (H, W) uint8
            0/1 mask, or None without labels. Read from the cache when there is one.

        Raises:
            ImageReadError: if a file cannot be decoded or the three sizes differ; the message
                names the files and their shapes.
            GeoreferenceError: if the two dates lie on different grids (`check_grid`).
        """
        if self.cache is not None:
            return self.cache.read(index)
        pair = self.pairs[index]
        self.check_grid(index, pair)
        t1 = read_image(pair.t1, bands=self.bands, grayscale=self.grayscale)
        t2 = read_image(pair.t2, bands=self.bands, grayscale=self.grayscale)
        mask = self.read_label(pair.label) if pair.label is not None else None
        shapes = [t1.shape, t2.shape] + ([mask.shape] if mask is not None else [])
        if len({s[:2] for s in shapes}) > 1:
            raise _shape_error(pair, shapes)
        return t1, t2, mask

    def read_windows(self, index: int, windows: list[Window]) -> list[Arrays]:
        """Several windows of scene `index`, reading each file once.

        Pillow decodes a file whole, so it is decoded once and cut; rasterio and the cache read
        just the windows' rows from disk.
        """
        if self.cache is not None:
            return [self.cache.read(index, window) for window in windows]
        pair = self.pairs[index]
        if not any(uses_rasterio(path) for _, path in pair.files()):
            return cut_windows(self.read_pair(index), windows)
        self.check_grid(index, pair)
        sizes = [image_size(path) for _, path in pair.files()]
        if len(set(sizes)) > 1:
            raise _shape_error(pair, sizes)
        options = {"bands": self.bands, "grayscale": self.grayscale}
        return [
            (
                read_image(pair.t1, window=window, **options),
                read_image(pair.t2, window=window, **options),
                self.read_label(pair.label, window) if pair.label is not None else None,
            )
            for window in windows
        ]

    def read_samples(
        self, samples: Sequence[int], rng: np.random.Generator | None = None
    ) -> list[tuple[int, Arrays]]:
        """``(scene, (t1, t2, mask))`` of each of `samples`, each scene read once.

        Crops are random given `rng`, central without it.
        """
        located = [self.locate(int(s), rng) for s in samples]
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
                for p, arrays in zip(positions, self.read_windows(scene, windows)):
                    out[p] = arrays
        return [(scene, arrays) for (scene, _), arrays in zip(located, out)]

    def change_fraction(self, progress: bool = True) -> float:
        """Fraction of changed pixels over every sample's mask, in one streaming pass.

        With tiles the pixels of every tile count, as a model sees them (pixels in
        overlapping tiles count once per tile); otherwise whole scenes count.

        Raises:
            DatasetError: if the split has no labels.
        """
        if not self.labelled:
            raise DatasetError("change_fraction needs labels; this dataset has none")
        changed = total = 0
        for i in tqdm(
            range(len(self.pairs)), desc="Reading masks", unit="mask", disable=not progress
        ):
            mask = self.read_mask(i)
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
        return changed / total
