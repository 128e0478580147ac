"""Scene readers: datasets stored one folder per scene rather than one folder per date.

`SceneSource` is a `SampleSource` whose scenes are read by a reader of their own (OSCD's
one-file-per-band GeoTIFFs, see `siamese_cd.data.layouts.oscd`) and may be restricted to a
region (AirChange's test crops, see `siamese_cd.data.layouts.airchange`; WHU-CD's validation
rows, see `siamese_cd.data.layouts.catalog.whu_cd`). Crops, tiles, `samples_per_scene`, the
decoded cache, `PairedImageDataset` batches and `as_tf_dataset` work on it unchanged: they
see scenes of the region's size.

The generic scene-folder layout is ``<root>/<scene>/{t1, t2, label}.<ext>``: one folder per
scene holding the two dates and the mask as single files, named by stem (any image
extension, in any case). The stems are configurable (`FolderSceneSource`, `find_scenes`).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for scene in ("north", "south"):
    ...     (root / scene).mkdir()
    ...     for stem, value in (("t1", 10), ("t2", 200), ("label", 255)):
    ...         image = Image.fromarray(np.full((40, 60), value, np.uint8))
    ...         image.save(root / scene / f"{stem}.PNG")
    >>> source = FolderSceneSource(find_scenes(root), regions=[None, (0, 0, 32, 48)])
    >>> [pair.stem for pair in source.pairs], source.scene_size(1)
    (['north', 'south'], (32, 48))
    >>> t1, t2, mask = source.read_pair(1)
    >>> t1.shape, int(mask.max())
    ((32, 48, 3), 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from siamese_cd.data.layouts.pairing import Pair, list_images
from siamese_cd.data.pipeline.source import Arrays, SampleSource, _shape_error
from siamese_cd.data.readers.decoding import Window, image_size, read_image, uses_rasterio
from siamese_cd.data.sampling.windows import cut_windows
from siamese_cd.errors import DatasetError, PairingError

SCENE_FILES = ("t1", "t2", "label")


class SceneSource(SampleSource):
    """A `SampleSource` whose scenes are read by `read_scene`, optionally cut to a region.

    Subclasses implement `read_scene` (a scene's three arrays, in the region given) and
    `full_size` (a scene's size before any region). `regions` holds one
    ``(top, left, height, width)`` per scene, or None for the whole scene.
    """

    files_are_samples = False

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        regions: Sequence[Window | None] | None = None,
        **options,
    ):
        # A plain list: a scene's name (e.g. "Szada/1") is not its t1 file's stem.
        pairs = list(pairs)
        if not pairs:
            raise DatasetError("no scenes to read")
        self.regions = list(regions) if regions is not None else [None] * len(pairs)
        if len(self.regions) != len(pairs):
            raise DatasetError(f"{len(self.regions)} regions for {len(pairs)} scenes")
        super().__init__(pairs, **options)

    # -- for subclasses --------------------------------------------------------------------------

    def read_scene(self, index: int, region: Window | None) -> Arrays:
        """Scene `index` as ``(t1, t2, mask or None)``, cut to `region` if given."""
        raise NotImplementedError

    def full_size(self, index: int) -> tuple[int, int]:
        """(height, width) of scene `index` before any region."""
        raise NotImplementedError

    # -- SampleSource, through read_scene ---------------------------------------------------------

    def decode_options(self) -> dict:
        return {
            **super().decode_options(),
            "regions": [list(r) if r else None for r in self.regions],
        }

    def _probe(self) -> None:
        first = self.read_pair(0)[0]
        self._channels, self._dtype = first.shape[-1], first.dtype

    def scene_size(self, index: int) -> tuple[int, int]:
        if self.cache is not None:
            return super().scene_size(index)
        region = self.regions[index]
        return (region[2], region[3]) if region is not None else self.full_size(index)

    def read_pair(self, index: int) -> Arrays:
        if self.cache is not None:
            return self.cache.read(index)
        t1, t2, mask = self.read_scene(index, self.regions[index])
        shapes = [t1.shape, t2.shape] + ([mask.shape] if mask is not None else [])
        if len({s[:2] for s in shapes}) > 1:
            raise _shape_error(self.pairs[index], shapes)
        return t1, t2, mask

    def read_mask(self, index: int) -> np.ndarray:
        return self.read_pair(index)[2]

    def read_windows(self, index: int, windows: list[Window]) -> list[Arrays]:
        # A scene is read whole once and cut: its reader may resample or crop it.
        return cut_windows(self.read_pair(index), windows)


class FolderSceneSource(SceneSource):
    """Scenes whose dates and mask are single image files (`find_scenes`), read as
    `SampleSource` reads files (`bands`, `grayscale`, `label_threshold`), cut to regions.

    GeoTIFF scenes are read window by window (rasterio reads just those rows), so a crop of a
    scene of any size costs the crop; other formats are decoded whole once and cut.
    """

    def full_size(self, index: int) -> tuple[int, int]:
        return image_size(self.pairs[index].t1)

    def read_scene(self, index: int, region: Window | None) -> Arrays:
        pair = self.pairs[index]
        self.check_grid(index, pair)
        options = {"bands": self.bands, "grayscale": self.grayscale, "window": region}
        t1 = read_image(pair.t1, **options)
        t2 = read_image(pair.t2, **options)
        mask = None
        if pair.label is not None:
            mask = self.read_label(pair.label, window=region)
        return t1, t2, mask

    def read_windows(self, index: int, windows: list[Window]) -> list[Arrays]:
        pair = self.pairs[index]
        if self.cache is not None or not any(uses_rasterio(path) for _, path in pair.files()):
            return super().read_windows(index, windows)
        self.check_grid(index, pair)
        sizes = [image_size(path) for _, path in pair.files()]
        if len(set(sizes)) > 1:
            raise _shape_error(pair, sizes)
        region = self.regions[index]
        top, left = (region[0], region[1]) if region is not None else (0, 0)
        return [self.read_scene(index, (top + y, left + x, h, w)) for y, x, h, w in windows]


def scene_files(folder: Path, names: Sequence[str] = SCENE_FILES) -> list[Path | None]:
    """The files of one scene folder named by stem: ``[t1, t2, label or None]``.

    Raises:
        PairingError: if a date is missing, two files share a stem (``a.bmp`` and
            ``a.BMP`` are two files), or an image is a broken symbolic link.
    """
    images = list_images(folder)
    found = [images.get(name) for name in names]
    missing = [name for name, path in zip(names[:2], found) if path is None]
    if missing:
        raise PairingError(
            f"{folder}: no image named {' or '.join(missing)} (found {sorted(images) or 'none'})"
        )
    return found


def is_scene_folder(folder: Path, names: Sequence[str] = SCENE_FILES) -> bool:
    """Whether `folder` holds images named like the two dates of a scene."""
    if not folder.is_dir():
        return False
    # A broken link counts: the scene is then found, and `scene_files` names the link.
    stems = {p.stem for p in folder.iterdir() if p.is_file() or p.is_symlink()}
    return all(name in stems for name in names[:2])


def find_scenes(
    root: str | Path,
    names: Sequence[str] = SCENE_FILES,
    scenes: Sequence[str] | None = None,
) -> list[Pair]:
    """The scenes of a scene-folder layout ``<root>/<scene>/{t1, t2, label}.<ext>``.

    Args:
        root: the folder of scene folders.
        names: stems of the first date, the second date and the mask.
        scenes: scene folders relative to `root` (e.g. ``"Szada/1"``), in this order; None
            takes every sub-folder holding both dates, sorted by name.

    Returns:
        One `Pair` per scene, its stem the scene's relative path; the label is None where a
        scene has no mask, which must then hold for every scene.

    Raises:
        PairingError: if a scene lacks a date, no scene is found, or some scenes have masks
            and others not.
    """
    root = Path(root)
    if scenes is None:
        scenes = sorted(
            p.name
            for p in root.iterdir()
            if not p.name.startswith(".") and is_scene_folder(p, names)
        )
    if not scenes:
        raise PairingError(f"{root}: no scene folder holding {names[0]} and {names[1]} images")
    pairs = []
    for scene in scenes:
        folder = root / scene
        if not folder.is_dir():
            raise PairingError(f"{folder}: scene folder not found")
        t1, t2, label = scene_files(folder, names)
        pairs.append(Pair(str(scene), t1, t2, label))
    labelled = {pair.label is not None for pair in pairs}
    if len(labelled) > 1:
        unlabelled = [pair.stem for pair in pairs if pair.label is None]
        raise PairingError(
            f"{root}: scenes {', '.join(unlabelled)} have no {names[2]} image but others have; "
            "give every scene a mask, or none"
        )
    return pairs
