"""Downloads read scene by scene (OSCD, AirChange, WHU-CD, scene folders), through the registry.

Each of these layouts is a class in `siamese_cd.data.layouts.catalog` (``reads_scenes``); the
functions here find one and open its reader: `scene_layout` names the layout of a folder,
`open_scene_source` opens one split, `split_scenes` lists a split's scenes and `hold_out` sets
some aside for validation. OSCD, AirChange and WHU-CD carry their own splits, so `split` is
required for them; scene folders have none.

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

from siamese_cd.data.layouts.registry import dataset_layout, layouts
from siamese_cd.data.pipeline.source import SampleSource
from siamese_cd.errors import DatasetError

SCENE_FOLDERS = "scene folders"


def describe_scene_layouts() -> str:
    """The scene layouts looked for, for messages."""
    return ", ".join(layout.describe() for layout in layouts() if layout.reads_scenes)


def scene_layout(root: str | Path, scene_files: Sequence[str] | None = None) -> str | None:
    """The name of the scene layout of `root` (``"OSCD"``, ``"AirChange"``, ...) or None."""
    layout = dataset_layout(root, scene_files)
    return layout.name if layout is not None and layout.reads_scenes else None


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
        split: the split of OSCD (``"train"``, ``"test"``, ``"all"`` or a list of cities),
            AirChange (``"train"``, ``"test"`` with its crops, ``"all"``) or WHU-CD
            (``"train"``, ``"val"``, ``"test"``); required for them.
        bands: OSCD band names (``"rgb"``, ``"all"``, a list; default all 13); band numbers
            for the other layouts.
        scene_files: stems of t1, t2 and label in scene folders (default t1, t2, label).
        label_threshold: change cut-off of scene folders' and WHU-CD's masks (OSCD and
            AirChange have their own rules).
        options: `SampleSource` options.

    Raises:
        DatasetError: if a split is missing or given where the layout has none, or bands are
            named outside OSCD.
    """
    if root is None:
        return None
    layout = dataset_layout(root, scene_files)
    if layout is None or not layout.reads_scenes:
        return None
    return layout.open(
        Path(root),
        split,
        bands=bands,
        scene_files=scene_files,
        label_threshold=label_threshold,
        **options,
    )


def split_scenes(root: str | Path, split: str | Sequence[str]) -> list[str]:
    """The scene names of a split of a scene download with its own splits (OSCD, AirChange).

    Raises:
        DatasetError: if `root` is none of them, or for a bad split.
    """
    root = Path(root)
    layout = dataset_layout(root)
    if layout is None or not layout.reads_scenes or not layout.splits:
        names = ", ".join(known.name for known in layouts() if known.reads_scenes and known.splits)
        raise DatasetError(f"{root}: not a dataset with its own splits ({names})")
    return layout.scenes(root, split)


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
