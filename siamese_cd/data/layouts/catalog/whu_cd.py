"""The WHU building change detection release, as distributed: one GeoTIFF pair per split.

Facts (sources: the release ``Building change detection dataset_add.zip`` from the WHU GPCV
group's building dataset page, and the public scripts that read it, which name its files:
``2012/whole_image/{split}/image/2012_{split}.tif``, ``2016/whole_image/...``,
``change_label/{split}/change_label.tif``, ``2012/splited_images/...``; Ji et al., "Fully
Convolutional Networks for Multisource Building Extraction From an Open Aerial and Satellite
Imagery Data Set", TGRS 2019):

- the archive unpacks into ``Building change detection dataset_add/`` holding ``1. The
  two-period image data/`` (and the shapefiles, not read);
- per split (``train``, ``test``) the whole aerial scene of each date is one RGB GeoTIFF,
  ``2012/whole_image/<split>/image/2012_<split>.tif`` and
  ``2016/whole_image/<split>/image/2016_<split>.tif``, and the change mask of the split is one
  GeoTIFF, ``change_label/<split>/change_label.tif`` (non-zero is change);
- ``<year>/whole_image/<split>/label/`` and ``<year>/splited_images/`` hold building masks of
  one date and 512 x 512 crops named by a running index: not the change label, not read.

So each split is one large scene, read with the library's scene machinery: training takes
random crops (the paper's 96 x 96 patches by default), evaluation reads the scene whole (one
per batch) or in tiles (``tile_size``), and only the windows needed are read from disk. The
release has no validation split: ``val`` is the bottom eighth of the ``train`` scene's rows
(`VAL_ROWS`) and ``train`` the rest, so the two never overlap; ``test`` is the released test
scene. Give ``Building change detection dataset_add``, ``1. The two-period image data``, or
the folder holding either.
"""

from __future__ import annotations

from pathlib import Path

from siamese_cd.data.layouts.pairing import Pair
from siamese_cd.data.layouts.registry import SceneLayout, Split, register
from siamese_cd.data.layouts.scenes import FolderSceneSource
from siamese_cd.data.pipeline.source import SampleSource
from siamese_cd.data.readers.decoding import Window, image_size
from siamese_cd.errors import DatasetError

RELEASE = "Building change detection dataset_add"
DATA = "1. The two-period image data"
YEARS = ("2012", "2016")
# The share of the train scene's rows, at the bottom, read as the validation split.
VAL_ROWS = 1 / 8


def release_files(data: Path, split: str) -> tuple[Path, Path, Path]:
    """The 2012 image, the 2016 image and the change mask of a released split."""

    def image(year: str) -> Path:
        return data / year / "whole_image" / split / "image" / f"{year}_{split}.tif"

    return image(YEARS[0]), image(YEARS[1]), data / "change_label" / split / "change_label.tif"


@register
class WhuCD(SceneLayout):
    """WHU-CD release: one 2012/2016 GeoTIFF pair and change mask per split."""

    name = "WHU-CD release"
    structure = f"'{DATA}' with 2012/, 2016/ whole_image and change_label/"
    splits = ("train", "val", "test")
    split_choices = "'train', 'val' (the bottom eighth of the train scene) or 'test'"
    bands = "RGB (aerial GeoTIFF, one scene per split)"
    order = 3

    @classmethod
    def data_folder(cls, root: Path) -> Path | None:
        """The ``1. The two-period image data`` folder of a download at `root`, or None."""
        root = Path(root)
        for folder in (root, root / DATA, root / RELEASE / DATA):
            if (folder / "change_label").is_dir() and all(
                (folder / year / "whole_image").is_dir() for year in YEARS
            ):
                return folder
        return None

    @classmethod
    def detect(cls, root: Path, scene_files=None) -> bool:
        return cls.data_folder(root) is not None

    @classmethod
    def scenes(cls, root: Path, split, on_missing: str = "error") -> list[str]:
        return [split]

    @classmethod
    def regions(cls, height: int, width: int) -> dict[str, Window]:
        """The ``train`` and ``val`` regions (top, left, height, width) of the train scene."""
        held = max(1, round(height * VAL_ROWS))
        return {"train": (0, 0, height - held, width), "val": (height - held, 0, held, width)}

    @classmethod
    def open(
        cls,
        root: Path,
        split: Split,
        *,
        bands=None,
        label_threshold: int | None = None,
        on_missing: str = "error",
        scene_files=None,
        **options,
    ) -> SampleSource:
        cls.check_band_numbers(root, bands)
        cls.need_split(root, split)
        if not isinstance(split, str) or split not in cls.splits:
            raise DatasetError(f"{root}: {cls.name} splits are {cls.split_choices}; got {split!r}")
        released = "test" if split == "test" else "train"
        files = release_files(cls.data_folder(root), released)
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise DatasetError(
                f"{root}: the {cls.name} {released} split lacks {', '.join(missing)}"
            )
        region = None if split == "test" else cls.regions(*image_size(files[0]))[split]
        options.setdefault("name", f"whu-cd-{split}")
        if label_threshold is not None:
            options["label_threshold"] = label_threshold
        pair = Pair(split, *files)
        return FolderSceneSource([pair], regions=[region], bands=bands, **options)
