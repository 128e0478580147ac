"""OSCD, the Onera Satellite Change Detection dataset, as downloaded: read city by city.

The reader and the facts it relies on (folder and file names, band order, label encodings,
where the test labels are) are in `siamese_cd.data.layouts.oscd`.
"""

from __future__ import annotations

from pathlib import Path

from siamese_cd.data.layouts import oscd
from siamese_cd.data.layouts.registry import SceneLayout, Split, register
from siamese_cd.data.pipeline.source import SampleSource


@register
class Oscd(SceneLayout):
    """OSCD: Sentinel-2 city pairs, one GeoTIFF per band; train and test cities."""

    name = oscd.NAME
    structure = f"the '{oscd.IMAGES}' folder or train.txt with city folders"
    splits = ("train", "test")
    split_choices = "'train', 'test', 'all' or a list of cities"
    bands = "13 Sentinel-2 bands (GeoTIFF), chosen by name: 'rgb', 'all' or a list"
    bands_by_name = True
    own_label_rule = True
    order = 1

    @classmethod
    def detect(cls, root: Path, scene_files=None) -> bool:
        return oscd.find_oscd(root) is not None

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
        cls.need_split(root, split)
        return oscd.oscd_source(root, split, bands=bands, **options)

    @classmethod
    def scenes(cls, root: Path, split, on_missing: str = "error") -> list[str]:
        images, _ = oscd.find_oscd(root)
        return oscd.split_cities(images, split)
