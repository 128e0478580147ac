"""The SZTAKI AirChange benchmark, as downloaded: read scene by scene.

The reader and the facts it relies on (site and scene folders, file names in either case, the
test scenes and their crop, the mask rule) are in `siamese_cd.data.layouts.airchange`.
"""

from __future__ import annotations

from pathlib import Path

from siamese_cd.data.layouts import airchange
from siamese_cd.data.layouts.registry import SceneLayout, Split, register
from siamese_cd.data.pipeline.source import SampleSource


@register
class AirChange(SceneLayout):
    """AirChange: ``Szada/<n>``, ``Tiszadob/<n>`` with ``im1``, ``im2``, ``gt`` (BMP)."""

    name = airchange.NAME
    structure = "Szada/<n>, Tiszadob/<n> with im1, im2, gt"
    splits = ("train", "test")
    split_choices = "'train', 'test' or 'all'"
    bands = "RGB (BMP, 952 x 640)"
    own_label_rule = True
    order = 2

    @classmethod
    def detect(cls, root: Path, scene_files=None) -> bool:
        return airchange.is_airchange(root)

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
        return airchange.airchange_source(root, split, bands=bands, **options)

    @classmethod
    def scenes(cls, root: Path, split, on_missing: str = "error") -> list[str]:
        return airchange.airchange_scenes(root, split)[0]
