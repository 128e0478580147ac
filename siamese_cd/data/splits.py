"""The splits of a dataset folder, for training, tuning and evaluation.

A dataset folder holds its splits in one of two ways:

- **split folders**: ``DATA/train``, ``DATA/val`` and optionally ``DATA/test``, each in a
  layout `PairedImageDataset` recognises (SYSU-CD, LEVIR-CD, WHU-CD, CDD, scene folders);
- **a dataset with its own split** (`SPLIT_LAYOUTS`: OSCD and AirChange, as downloaded). It
  has a train and a test split but no validation split, so the last `VAL_SCENES` training
  scenes are held out for validation. It holds a few large scenes of different sizes, so
  training takes random crops (the paper's 96 x 96 patches by default,
  `siamese_cd.data.windows.PAPER_PATCH`), as many per scene and epoch as a stride of half a
  crop cuts; validation and test scenes are read whole, one per batch. OSCD test labels are
  a separate release: without them the test split is not scored, and the note says so.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())  # AirChange: the scenes of the standard split
    >>> for scene in ("Szada/1", "Szada/2", "Szada/3", "Tiszadob/3"):
    ...     (root / scene).mkdir(parents=True)
    ...     for stem in ("im1", "im2", "gt"):
    ...         Image.fromarray(np.zeros((640, 952), np.uint8)).save(root / scene / f"{stem}.bmp")
    >>> splits = training_splits(root, batch_size=4, multiple=16, progress=False)
    >>> [pair.stem for pair in splits.train.pairs], [pair.stem for pair in splits.val.pairs]
    (['Szada/2'], ['Szada/3'])
    >>> splits.train.source.crop_size, splits.train.num_samples  # 96 x 96, 13 x 19 per scene
    ((96, 96), 247)
    >>> [pair.stem for pair in splits.test.pairs], splits.test.source.scene_size(0)
    (['Szada/1', 'Tiszadob/3'], (448, 784))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from siamese_cd.data.dataset import PairedImageDataset
from siamese_cd.data.oscd import NAME as OSCD
from siamese_cd.data.scene_layouts import SPLIT_LAYOUTS, hold_out, scene_layout, split_scenes
from siamese_cd.data.windows import PAPER_PATCH, patch_for, patches_per_scene
from siamese_cd.errors import DatasetError

# Training scenes of OSCD or AirChange held out for validation (at most half of them).
VAL_SCENES = 2


@dataclass
class DatasetSplits:
    """The datasets of a run; `test` is None without a (labelled) test split.

    `note` says how the splits were chosen when the dataset has its own split.
    """

    train: PairedImageDataset
    val: PairedImageDataset
    test: PairedImageDataset | None = None
    note: str = ""


def split_folder(data_dir: str | Path, split: str, required: bool = True) -> Path | None:
    """``data_dir/split`` if it is a folder; None if missing and not `required`.

    Raises:
        DatasetError: if a required split folder is missing.
    """
    folder = Path(data_dir) / split
    if folder.is_dir():
        return folder
    if required:
        raise DatasetError(f"{data_dir}: no {split}/ folder (expected train/, val/, test/)")
    return None


def _check_bands(data_dir: Path, layout: str | None, bands) -> None:
    if bands is not None and layout != OSCD:
        raise DatasetError(
            f"{data_dir}: bands are chosen by name only for {OSCD}, and this folder is "
            f"{layout or 'split folders'}"
        )


def open_split(
    data_dir: str | Path,
    split: str | Sequence[str],
    *,
    bands=None,
    required: bool = True,
    **options,
) -> PairedImageDataset | None:
    """One split of `data_dir`, for scoring: its split folder, or a split of OSCD/AirChange.

    `split` is a folder name, or for OSCD and AirChange ``"train"``, ``"test"``, ``"all"``
    or a list of scenes. Whole scenes of OSCD and AirChange differ in size, so they come one
    per batch unless ``tile_size`` is given, and their masks follow the dataset's own rule
    (``label_threshold`` is not used). `options` go to `PairedImageDataset`.

    Raises:
        DatasetError: if the split is missing (and `required`) or does not pair.
    """
    data_dir = Path(data_dir)
    layout = scene_layout(data_dir)
    _check_bands(data_dir, layout, bands)
    if layout in SPLIT_LAYOUTS:
        options.pop("label_threshold", None)
        if options.get("tile_size") is None:
            options["batch_size"] = 1
        return PairedImageDataset(data_dir, split=split, bands=bands, **options)
    folder = split_folder(data_dir, split, required)
    return PairedImageDataset(folder, **options) if folder is not None else None


def training_splits(
    data_dir: str | Path,
    *,
    batch_size: int,
    augment: bool = True,
    seed: int | None = 0,
    crop_size: int | None = None,
    multiple: int = 1,
    bands=None,
    with_test: bool = True,
    progress: bool = True,
    **reading,
) -> DatasetSplits:
    """Training (shuffled, augmented), validation and test splits of `data_dir`.

    Args:
        data_dir: a folder of split folders, or an OSCD or AirChange download.
        batch_size: training batch size (and evaluation batch size of split folders).
        augment: random flips and rotations of training samples.
        seed: seed of shuffling, cropping and augmentation.
        crop_size: train on random crops of this side; default whole images, or the paper's
            patch for OSCD and AirChange.
        multiple: what the network's input side must be a multiple of (``2 ** depth``); the
            default crop of OSCD and AirChange is made one.
        bands: OSCD bands (``"rgb"``, ``"all"``, or names); OSCD reads all 13 by default.
        with_test: also open the test split (False leaves it unread; `test` is then None).
        progress: progress bars for long work.
        reading: `PairedImageDataset` options of every split (``label_threshold``,
            ``on_missing``); OSCD and AirChange masks follow their own rule.

    Raises:
        DatasetError: if a split is missing or does not pair, or `bands` names bands of a
            dataset that is not OSCD.
    """
    data_dir = Path(data_dir)
    layout = scene_layout(data_dir)
    _check_bands(data_dir, layout, bands)
    train_options = dict(augment=augment, shuffle=True, seed=seed, progress=progress, **reading)
    if layout in SPLIT_LAYOUTS:
        train_options.pop("label_threshold", None)  # their masks follow their own rule
        return _own_splits(data_dir, layout, batch_size, crop_size, multiple, bands, with_test,
                           train_options)  # fmt: skip
    # Both folders are looked for first, so a missing one is named before any is read.
    train_dir, val_dir = split_folder(data_dir, "train"), split_folder(data_dir, "val")
    train = PairedImageDataset(
        train_dir, batch_size=batch_size, crop_size=crop_size, **train_options
    )
    scoring = dict(batch_size=batch_size, progress=progress, **reading)
    val = PairedImageDataset(val_dir, **scoring)
    test = open_split(data_dir, "test", required=False, **scoring) if with_test else None
    return DatasetSplits(train, val, test)


def scene_crops(
    data_dir: str | Path,
    split: str | Sequence[str],
    *,
    bands=None,
    crop_size: int | None = None,
    multiple: int = 1,
    samples_per_scene: int | None = None,
    progress: bool = True,
    **options,
) -> PairedImageDataset:
    """Random crops of the scenes of an OSCD or AirChange split, for training.

    The crop side is `crop_size`, or the paper's patch (`PAPER_PATCH`) made a multiple of
    `multiple` and no larger than the smallest scene; `samples_per_scene` defaults to as many
    crops per scene and epoch as a stride of half a crop cuts. `options` go to
    `PairedImageDataset` (``batch_size``, ``shuffle``, ``augment``, ``seed``, ...).
    """
    probe = PairedImageDataset(data_dir, split=split, bands=bands, progress=progress)
    sizes = probe.source.scene_sizes()
    crop = crop_size or patch_for(sizes, PAPER_PATCH, multiple)
    per_scene = samples_per_scene or patches_per_scene(sizes, crop)
    return PairedImageDataset(
        data_dir, split=split, bands=bands, crop_size=crop, samples_per_scene=per_scene,
        progress=progress, **options,
    )  # fmt: skip


def _own_splits(
    data_dir: Path, layout: str, batch_size, crop_size, multiple, bands, with_test, train_options
) -> DatasetSplits:
    """Train on crops of most training scenes, validate on the rest, test on the test split."""
    kept, held = hold_out(split_scenes(data_dir, "train"), VAL_SCENES)
    train = scene_crops(
        data_dir, kept, bands=bands, crop_size=crop_size, multiple=multiple,
        batch_size=batch_size, **train_options,
    )  # fmt: skip
    scoring = dict(progress=train_options["progress"])
    val = open_split(data_dir, held, bands=bands, **scoring)
    crop, per_scene = train.source.crop_size[0], train.source.samples_per_scene
    note = (
        f"{layout}: training on {len(kept)} scenes ({crop} x {crop} crops, {per_scene} per "
        f"scene and epoch), validating on held-out {', '.join(held)}"
    )
    test = open_split(data_dir, "test", bands=bands, **scoring) if with_test else None
    if test is not None and not test.labelled:
        test = None
        note += "; the test split has no labels here (OSCD's are a separate release): not scored"
    return DatasetSplits(train, val, test, note)
