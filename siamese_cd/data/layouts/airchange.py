"""The SZTAKI AirChange benchmark: scene folders, and the standard split with its test crops.

The download holds ``Szada/1`` ... ``Szada/7``, ``Tiszadob/1`` ... ``Tiszadob/5`` and
``Archieve/`` (sic), each with ``im1``, ``im2`` and ``gt`` as BMP files whose extension may be
in either case (``.bmp``, ``.BMP``, mixed in one folder). Images are 952 x 640 RGB at 1.5 m;
``gt`` is a mask whose non-zero pixels are change (a few stray grey values included), so
masks are read with a threshold of 1.

The protocol of the FC-Siam line of work: test on ``Szada/1`` and ``Tiszadob/3``, each cut to
its top-left 784 x 448 pixels (rows 0-447, columns 0-783, `TEST_REGION`); train on the other
Szada and Tiszadob scenes. ``Archieve`` belongs to neither split.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for scene in ("Szada/1", "Szada/2", "Tiszadob/3"):
    ...     (root / scene).mkdir(parents=True)
    ...     for stem in ("im1", "im2", "gt"):
    ...         Image.fromarray(np.zeros((640, 952), np.uint8)).save(root / scene / f"{stem}.bmp")
    >>> is_airchange(root)
    True
    >>> source = airchange_source(root, split="test")
    >>> [pair.stem for pair in source.pairs], source.scene_size(0)
    (['Szada/1', 'Tiszadob/3'], (448, 784))
    >>> [pair.stem for pair in airchange_source(root, split="train").pairs]
    ['Szada/2']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from siamese_cd.data.layouts.scenes import FolderSceneSource, find_scenes, is_scene_folder
from siamese_cd.errors import DatasetError

NAME = "AirChange"
SITES = ("Szada", "Tiszadob")
FILES = ("im1", "im2", "gt")
TEST_SCENES = ("Szada/1", "Tiszadob/3")
# (top, left, height, width): the top-left 784 x 448 pixels, rows 0-447 and columns 0-783.
TEST_REGION = (0, 0, 448, 784)
SPLITS = ("train", "test", "all")
# Any non-zero mask value is change (stray grey values included).
LABEL_THRESHOLD = 1


def _site_scenes(root: Path) -> list[str]:
    """``"Szada/1"``-style names of every scene folder under the two sites, in number order."""
    scenes = []
    for site in SITES:
        folder = root / site
        if not folder.is_dir():
            continue
        numbered = [p for p in folder.iterdir() if p.name.isdigit() and is_scene_folder(p, FILES)]
        scenes += [f"{site}/{p.name}" for p in sorted(numbered, key=lambda p: int(p.name))]
    return scenes


def is_airchange(root: str | Path) -> bool:
    """Whether `root` holds AirChange scenes (``Szada/<n>`` or ``Tiszadob/<n>`` folders)."""
    root = Path(root)
    return root.is_dir() and bool(_site_scenes(root))


def airchange_scenes(
    root: str | Path, split: str | Sequence[str] = "train"
) -> tuple[list[str], list]:
    """The scene names and regions of an AirChange split.

    ``"train"``: every Szada and Tiszadob scene but the test scenes, whole. ``"test"``:
    ``Szada/1`` and ``Tiszadob/3`` cut to `TEST_REGION`. ``"all"``: every Szada and Tiszadob
    scene, whole. A list of scene names (``["Szada/2", "Tiszadob/1"]``): those scenes, whole.

    Raises:
        DatasetError: for an unknown split or scene, or a test scene that is missing.
    """
    root = Path(root)
    scenes = _site_scenes(root)
    if not isinstance(split, str):
        chosen = [str(scene) for scene in split]
        unknown = [scene for scene in chosen if scene not in scenes]
        if unknown or not chosen:
            raise DatasetError(
                f"{root}: no AirChange scene {unknown or chosen!r} (scenes: {', '.join(scenes)})"
            )
        return chosen, [None] * len(chosen)
    if split not in SPLITS:
        raise DatasetError(
            f"{root}: AirChange split must be one of {SPLITS} or a list of scenes, got {split!r}"
        )
    if split == "all":
        return scenes, [None] * len(scenes)
    if split == "train":
        train = [scene for scene in scenes if scene not in TEST_SCENES]
        if not train:
            raise DatasetError(f"{root}: no AirChange training scene (only {TEST_SCENES})")
        return train, [None] * len(train)
    missing = [scene for scene in TEST_SCENES if scene not in scenes]
    if missing:
        raise DatasetError(f"{root}: AirChange test scene(s) {', '.join(missing)} not found")
    return list(TEST_SCENES), [TEST_REGION] * len(TEST_SCENES)


def airchange_source(
    root: str | Path, split: str | Sequence[str] = "train", **options
) -> FolderSceneSource:
    """A `FolderSceneSource` of an AirChange split; `options` go to `SampleSource`."""
    scenes, regions = airchange_scenes(root, split)
    pairs = find_scenes(root, FILES, scenes)
    options.setdefault("name", f"airchange-{split if isinstance(split, str) else 'scenes'}")
    return FolderSceneSource(pairs, regions=regions, label_threshold=LABEL_THRESHOLD, **options)
