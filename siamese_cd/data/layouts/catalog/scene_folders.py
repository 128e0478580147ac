"""Scene folders: ``<root>/<scene>/{t1, t2, label}.<ext>``, one folder per scene.

The generic layout for a few large scenes (`siamese_cd.data.layouts.scenes`): each scene
folder holds the two dates and the mask as single image files named by stem (any image
extension, in any case; the stems are set by ``scene_files``). It has no splits: give each
split its own folder. Tried last, after every other download layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from siamese_cd.data.layouts.registry import SceneLayout, Split, register
from siamese_cd.data.layouts.scene_layouts import SCENE_FOLDERS
from siamese_cd.data.layouts.scenes import (
    SCENE_FILES,
    FolderSceneSource,
    find_scenes,
    is_scene_folder,
)
from siamese_cd.data.pipeline.source import SampleSource
from siamese_cd.errors import DatasetError


@register
class SceneFolders(SceneLayout):
    """Scene folders: ``<scene>/t1``, ``t2``, ``label`` images (stems set by scene_files)."""

    name = SCENE_FOLDERS
    structure = "<scene>/t1, t2, label"
    bands = "as stored (PNG, JPEG, BMP or GeoTIFF)"
    order = 200

    @classmethod
    def detect(cls, root: Path, scene_files: Sequence[str] | None = None) -> bool:
        names = scene_files or SCENE_FILES
        folders = [p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")]
        return bool(folders) and all(is_scene_folder(p, names) for p in folders)

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
        if split is not None:
            raise DatasetError(f"{root}: scene folders have no splits; give each split its folder")
        names = tuple(scene_files or SCENE_FILES)
        options.setdefault("name", Path(root).name)
        if label_threshold is not None:
            options["label_threshold"] = label_threshold
        return FolderSceneSource(find_scenes(root, names), bands=bands, **options)
