"""Recognise the scene layouts (OSCD, AirChange, scene folders) and open their reader.

Split folders in date-folder layouts (SYSU-CD, LEVIR-CD, ...) are found by
`siamese_cd.data.pairing.detect_layout`. Datasets stored one folder per scene are found
here, tried in this order: OSCD (`siamese_cd.data.oscd`), AirChange
(`siamese_cd.data.airchange`), then the generic ``<root>/<scene>/{t1, t2, label}`` layout
(`siamese_cd.data.scenes`). OSCD and AirChange carry their own splits, so `split` is required
for them; scene folders have none.

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "scene_a").mkdir()
    >>> for stem in ("t1", "t2", "label"):
    ...     Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "scene_a" / f"{stem}.png")
    >>> scene_layout(root)
    'scene folders'
    >>> open_scene_source(root, progress=False).num_samples
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np  # noqa: F401  (used by the example)

from siamese_cd.data import airchange, oscd
from siamese_cd.data.scenes import SCENE_FILES, FolderSceneSource, find_scenes, is_scene_folder
from siamese_cd.data.source import SampleSource
from siamese_cd.errors import DatasetError

SCENE_FOLDERS = "scene folders"
# The layouts that carry their own train/test split.
SPLIT_LAYOUTS = (oscd.NAME, airchange.NAME)


def describe_scene_layouts() -> str:
    """The scene layouts looked for, for messages."""
    return (
        f"{oscd.NAME} (the '{oscd.IMAGES}' folder or train.txt with city folders), "
        f"{airchange.NAME} (Szada/<n>, Tiszadob/<n> with im1, im2, gt), "
        f"{SCENE_FOLDERS} (<scene>/t1, t2, label)"
    )


def _scene_folders(root: Path, names: Sequence[str]) -> bool:
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(folders) and all(is_scene_folder(p, names) for p in folders)


def scene_layout(root: str | Path, scene_files: Sequence[str] | None = None) -> str | None:
    """The scene layout of `root` (``"OSCD"``, ``"AirChange"``, ``"scene folders"``) or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    if oscd.find_oscd(root) is not None:
        return oscd.NAME
    if airchange.is_airchange(root):
        return airchange.NAME
    if _scene_folders(root, scene_files or SCENE_FILES):
        return SCENE_FOLDERS
    return None


def open_scene_source(
    root: str | Path | None,
    *,
    split: str | Sequence[str] | None = None,
    bands: str | Sequence | None = None,
    scene_files: Sequence[str] | None = None,
    label_threshold: int | None = None,
    **options,
) -> SampleSource | None:
    """The `SampleSource` of a scene layout at `root`, or None if `root` is none of them.

    Args:
        root: the dataset folder.
        split: the split of OSCD (``"train"``, ``"test"``, ``"all"`` or a list of cities) or
            AirChange (``"train"``, ``"test"`` with its crops, ``"all"``); required for them.
        bands: OSCD band names (``"rgb"``, ``"all"``, a list; default all 13); band numbers
            for the other layouts.
        scene_files: stems of t1, t2 and label in scene folders (default t1, t2, label).
        label_threshold: change cut-off of scene folders' masks (OSCD and AirChange have
            their own rules).
        options: `SampleSource` options.

    Raises:
        DatasetError: if a split is missing or given where the layout has none, or bands are
            named outside OSCD.
    """
    if root is None:
        return None
    root = Path(root)
    layout = scene_layout(root, scene_files)
    if layout is None:
        return None
    if layout == oscd.NAME:
        _need_split(root, layout, split, "'train', 'test', 'all' or a list of cities")
        return oscd.oscd_source(root, split, bands=bands, **options)
    if isinstance(bands, str) or (bands and isinstance(next(iter(bands)), str)):
        raise DatasetError(f"{root}: bands are named only for OSCD; give band numbers here")
    if layout == airchange.NAME:
        _need_split(root, layout, split, "'train', 'test' or 'all'")
        return airchange.airchange_source(root, split, bands=bands, **options)
    if split is not None:
        raise DatasetError(f"{root}: scene folders have no splits; give each split its folder")
    names = tuple(scene_files or SCENE_FILES)
    options.setdefault("name", root.name)
    if label_threshold is not None:
        options["label_threshold"] = label_threshold
    return FolderSceneSource(find_scenes(root, names), bands=bands, **options)


def split_scenes(root: str | Path, split: str | Sequence[str]) -> list[str]:
    """The scene names of a split of an OSCD or AirChange dataset at `root`.

    Raises:
        DatasetError: if `root` is neither, or for a bad split.
    """
    root = Path(root)
    layout = scene_layout(root)
    if layout == oscd.NAME:
        images, _ = oscd.find_oscd(root)
        return oscd.split_cities(images, split)
    if layout == airchange.NAME:
        return airchange.airchange_scenes(root, split)[0]
    raise DatasetError(f"{root}: not a dataset with its own splits ({', '.join(SPLIT_LAYOUTS)})")


def hold_out(scenes: Sequence[str], count: int) -> tuple[list[str], list[str]]:
    """``(kept, held)``: the last `count` scenes held out (at most half, at least one).

    Example:
        >>> hold_out(["a", "b", "c", "d", "e"], 2)
        (['a', 'b', 'c'], ['d', 'e'])

    Raises:
        DatasetError: with fewer than two scenes.
    """
    scenes = list(scenes)
    held = max(1, min(count, len(scenes) // 2))
    if len(scenes) < 2:
        raise DatasetError(f"{len(scenes)} scene(s): too few to hold one out ({scenes})")
    return scenes[:-held], scenes[-held:]


def _need_split(root: Path, layout: str, split, choices: str) -> None:
    if split is None:
        raise DatasetError(f"{root}: an {layout} dataset; pass split= ({choices})")
