"""LEVIR-CD+: ``LEVIR-CD+/train/`` and ``LEVIR-CD+/test/``, each with ``A/ B/ label/``.

Facts (sources: torchgeo ``datasets/levircd.py`` (``LEVIRCDPlus``: the archive
``LEVIR-CD+.zip`` unpacks into ``LEVIR-CD+/``, splits ``('train', 'test')``, files
``<split>/A|B|label/<name>.png``); Shen et al., "S2Looking: A Satellite Side-Looking Dataset
for Building Change Detection", Remote Sensing 2021, which introduced it):

- 985 pairs of 1024 x 1024 Google Earth RGB images at 0.5 m: 637 for training and 348 for
  testing; there is no validation split;
- labels are PNG masks, 0 (no change) and 255 (building change).

Without a validation split, training holds out the last tenth of the training pairs (by name,
`siamese_cd.data.layouts.registry.VAL_FRACTION`) for validation, and says so in the run's
note. Give the folder holding ``LEVIR-CD+/``, or ``LEVIR-CD+`` itself.
"""

from __future__ import annotations

from pathlib import Path

from siamese_cd.data.layouts.registry import FolderLayout, register


@register
class LevirCDPlus(FolderLayout):
    """LEVIR-CD+: ``LEVIR-CD+/{train,test}/{A,B,label}``; no validation split."""

    name = "LEVIR-CD+"
    folders = ("A", "B", "label")
    splits = ("train", "test")
    roots = ("LEVIR-CD+", "")
    names_split_folders = False  # an A/ B/ label/ split folder is "LEVIR-CD or WHU-CD"
    bands = "RGB (PNG, 1024 x 1024)"
    order = 22

    @classmethod
    def detect(cls, root: Path, scene_files=None) -> bool:
        # With a val/ folder beside train/ and test/ it is LEVIR-CD or plain split folders.
        base = cls.base(root)
        return base is not None and not (base / "val").is_dir()
