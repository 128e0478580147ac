"""Open whatever a path holds as a `SampleSource`: a download, a split folder, a CSV or folders.

This is how `siamese_cd.data.pipeline.dataset.PairedImageDataset` finds its samples. In order:

1. a download a registered layout recognises (`registry.dataset_layout`): OSCD, AirChange,
   WHU-CD, LEVIR-CD, LEVIR-CD+, S2Looking, CDD, SECOND, SYSU-CD, scene folders; it is read by
   its class (`registry.Layout.open`), with `split` choosing the split;
2. a CSV file of ``t1,t2,label`` rows (`pairing.pairs_from_csv`);
3. a split folder in a registered folder layout (`registry.folder_layout`: ``time1/ time2/
   label/``, ``A/ B/ label/``, ...);
4. three folders given explicitly (`pairing.pair_by_stem`).

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> import numpy as np
    >>> split = Path(tempfile.mkdtemp())
    >>> for folder in ("Image1", "Image2", "label"):  # an S2Looking split folder
    ...     (split / folder).mkdir()
    ...     Image.fromarray(np.zeros((32, 32), np.uint8)).save(split / folder / "1.png")
    >>> source = open_source(split, progress=False)
    >>> len(source.pairs), source.pairs[0].t1.parent.name
    (1, 'Image1')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from siamese_cd.data.layouts.pairing import PairList, pair_by_stem, pairs_from_csv
from siamese_cd.data.layouts.registry import (
    dataset_layout,
    describe_dataset_layouts,
    folder_layout,
    near_miss,
)
from siamese_cd.data.pipeline.source import SampleSource
from siamese_cd.errors import DatasetError


def split_name(root: Path | None, pairs: PairList) -> str:
    """A readable name for a split (its folder, or the CSV's stem), e.g. for its cache."""
    if root is not None:
        return root.stem if root.suffix.lower() == ".csv" else root.name
    return pairs[0].t1.parent.parent.name or "split"


def open_source(
    root: str | Path | None = None,
    *,
    split: str | Sequence[str] | None = None,
    scene_files: Sequence[str] | None = None,
    t1_dir: str | Path | None = None,
    t2_dir: str | Path | None = None,
    label_dir: str | Path | None = None,
    on_missing: str = "error",
    **reading,
) -> SampleSource:
    """The `SampleSource` of `root` (or of three folders); `reading` goes to the source.

    Raises:
        DatasetError: if nothing usable is given, both a root and folders are, `split` is
            given for a folder that has no splits, or the folder matches no layout.
        PairingError: if files do not pair (see `pairing.pair_by_stem`).
    """
    if root is not None:
        layout = dataset_layout(root, scene_files)
        if layout is not None:
            return layout.open(
                Path(root), split, scene_files=scene_files, on_missing=on_missing, **reading
            )
        if split is not None:
            raise DatasetError(
                f"{root}: split= picks a split of a download in a known layout "
                f"({describe_dataset_layouts()}); this folder is not one{near_miss(root)}, so "
                "give the split's own folder as root"
            )
    make = SampleSource
    if root is not None and (t1_dir or t2_dir or label_dir):
        raise DatasetError("give either a split folder or t1_dir/t2_dir/label_dir, not both")
    if root is not None and Path(root).suffix.lower() == ".csv":
        pairs = pairs_from_csv(root, on_missing=on_missing)
    elif root is not None:
        layout = folder_layout(root)
        pairs, make = layout.pairs(Path(root), on_missing=on_missing), layout.source
    elif t1_dir is not None and t2_dir is not None:
        pairs = pair_by_stem(t1_dir, t2_dir, label_dir, on_missing=on_missing)
    else:
        raise DatasetError("give a split folder, or both t1_dir and t2_dir")
    root = Path(root) if root is not None else None
    return make(pairs, name=split_name(root, pairs), **reading)
