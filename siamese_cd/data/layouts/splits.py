"""The splits of a dataset folder, for training, tuning and evaluation.

A dataset folder holds its splits in one of three ways:

- **split folders**: ``DATA/train``, ``DATA/val`` and optionally ``DATA/test``, each in a
  layout `PairedImageDataset` recognises (SYSU-CD, LEVIR-CD, WHU-CD, CDD, S2Looking, SECOND,
  scene folders);
- **a benchmark as published** (a `siamese_cd.data.layouts.registry.FolderLayout` with
  splits: LEVIR-CD, LEVIR-CD+, S2Looking, CDD's ``Real/subset``, SECOND, SYSU-CD). Its split
  folders are found where the download keeps them; one without a validation split (LEVIR-CD+,
  SECOND) holds out the last tenth of its training pairs for validation, and the note says so;
- **a download read scene by scene** (OSCD, AirChange, the WHU-CD release). OSCD and
  AirChange have a train and a test split but no validation split, so the last `VAL_SCENES`
  training scenes are held out for validation; WHU-CD's validation split is the bottom of its
  train scene. They hold a few large scenes of different sizes, so training takes random crops
  (the paper's 96 x 96 patches by default, `siamese_cd.data.sampling.windows.PAPER_PATCH`), as
  many per scene and epoch as a stride of half a crop cuts; validation and test scenes are read
  whole, one per batch. OSCD test labels are a separate release: without them the test split
  is not scored, and the note says so.

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

from siamese_cd.data.layouts.oscd import NAME as OSCD
from siamese_cd.data.layouts.registry import VAL_SCENES, Layout, dataset_layout, near_miss
from siamese_cd.data.layouts.scene_layouts import hold_out
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.data.sampling.windows import PAPER_PATCH, patch_for, patches_per_scene
from siamese_cd.errors import DatasetError

__all__ = [
    "VAL_SCENES",
    "DatasetSplits",
    "open_split",
    "scene_crops",
    "split_folder",
    "training_splits",
]


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
        raise DatasetError(
            f"{data_dir}: no {split}/ folder (expected train/, val/, test/){near_miss(data_dir)}"
        )
    return None


def _check_bands(data_dir: Path, layout: type[Layout] | None, bands) -> None:
    if bands is not None and (layout is None or not layout.bands_by_name):
        raise DatasetError(
            f"{data_dir}: bands are chosen by name only for {OSCD}, and this folder is "
            f"{layout.name if layout is not None else 'split folders'}"
        )


def open_split(
    data_dir: str | Path,
    split: str | Sequence[str],
    *,
    bands=None,
    required: bool = True,
    **options,
) -> PairedImageDataset | None:
    """One split of `data_dir`, for scoring: its split folder, or a split of a download.

    `split` is a folder name, a split of a registered download (``"train"``, ``"val"``,
    ``"test"`` as it has them; OSCD and AirChange also ``"all"``) or a list of scenes. Whole
    scenes of downloads read scene by scene differ in size, so they come one per batch unless
    ``tile_size`` is given; OSCD's and AirChange's masks follow the dataset's own rule
    (``label_threshold`` is not used). `options` go to `PairedImageDataset`.

    Raises:
        DatasetError: if the split is missing (and `required`) or does not pair.
    """
    data_dir = Path(data_dir)
    layout = dataset_layout(data_dir)
    _check_bands(data_dir, layout, bands)
    if layout is not None and layout.reads_scenes:
        if layout.own_label_rule:
            options.pop("label_threshold", None)
        if options.get("tile_size") is None:
            options["batch_size"] = 1
        return PairedImageDataset(data_dir, split=split, bands=bands, **options)
    if layout is not None and (not isinstance(split, str) or split in layout.splits):
        return PairedImageDataset(data_dir, split=split, **options)
    if layout is not None and not (data_dir / split).is_dir():
        if not required:
            return None
        raise DatasetError(
            f"{data_dir}: {layout.name} has no {split} split (its splits: "
            f"{', '.join(layout.splits)})"
        )
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
    layout = dataset_layout(data_dir)
    _check_bands(data_dir, layout, bands)
    train_options = dict(augment=augment, shuffle=True, seed=seed, progress=progress, **reading)
    if layout is not None and layout.reads_scenes:
        if layout.own_label_rule:
            train_options.pop("label_threshold", None)  # their masks follow their own rule
        return _scene_splits(data_dir, layout, batch_size, crop_size, multiple, bands, with_test,
                             train_options)  # fmt: skip
    scoring = dict(batch_size=batch_size, progress=progress, **reading)
    if layout is not None:
        return _benchmark_splits(data_dir, layout, batch_size, crop_size, with_test,
                                 train_options, scoring)  # fmt: skip
    # Both folders are looked for first, so a missing one is named before any is read.
    train_dir, val_dir = split_folder(data_dir, "train"), split_folder(data_dir, "val")
    train = PairedImageDataset(
        train_dir, batch_size=batch_size, crop_size=crop_size, **train_options
    )
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


def _benchmark_splits(
    data_dir: Path, layout, batch_size, crop_size, with_test, train_options, scoring
) -> DatasetSplits:
    """The splits of a benchmark as published; without ``val``, held-out training pairs."""
    train_split, val_split, note = "train", "val", ""
    if "val" not in layout.splits:
        names = layout.scenes(
            data_dir, "train", on_missing=train_options.get("on_missing", "error")
        )
        train_split, val_split = hold_out(names, layout.held_out(len(names)))
        note = (
            f"{layout.name}: no validation split; validating on the last {len(val_split)} of "
            f"{len(names)} training pairs ({val_split[0]} to {val_split[-1]}), training on "
            "the others"
        )
    train = PairedImageDataset(
        data_dir, split=train_split, batch_size=batch_size, crop_size=crop_size, **train_options
    )
    val = PairedImageDataset(data_dir, split=val_split, **scoring)
    test = None
    if with_test and "test" in layout.splits:
        test = PairedImageDataset(data_dir, split="test", **scoring)
    return DatasetSplits(train, val, test, note)


def _scene_splits(
    data_dir: Path, layout, batch_size, crop_size, multiple, bands, with_test, train_options
) -> DatasetSplits:
    """Train on crops of most training scenes, validate on the rest, test on the test split."""
    if "val" in layout.splits:
        kept, held = "train", "val"
        trained, validated = "the train split", "the val split"
    else:
        kept, held = hold_out(layout.scenes(data_dir, "train"), layout.held_out(0))
        trained, validated = f"{len(kept)} scenes", f"held-out {', '.join(held)}"
    train = scene_crops(
        data_dir, kept, bands=bands, crop_size=crop_size, multiple=multiple,
        batch_size=batch_size, **train_options,
    )  # fmt: skip
    # The user's label threshold stays only where the layout has no rule of its own.
    scoring = {k: v for k, v in train_options.items() if k in ("progress", "label_threshold")}
    val = open_split(data_dir, held, bands=bands, **scoring)
    crop, per_scene = train.source.crop_size[0], train.source.samples_per_scene
    note = (
        f"{layout.name}: training on {trained} ({crop} x {crop} crops, {per_scene} per "
        f"scene and epoch), validating on {validated}"
    )
    test = open_split(data_dir, "test", bands=bands, **scoring) if with_test else None
    if test is not None and not test.labelled:
        test = None
        note += "; the test split has no labels here (OSCD's are a separate release): not scored"
    return DatasetSplits(train, val, test, note)
