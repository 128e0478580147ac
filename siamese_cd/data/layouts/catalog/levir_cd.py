"""LEVIR-CD: ``train/ val/ test/``, each with ``A/ B/ label/`` of 1024 x 1024 PNG.

Facts (sources: torchgeo ``datasets/levircd.py`` (``LEVIRCD``: directories ``A``, ``B``,
``label``; files ``<split>_<n>.png``; "masks are single-channel pngs where no change = 0,
change = 255"); the Open-CD data preparation notes (``train|val|test/{A,B,label}``, labels
0/255); Chen and Shi, "A Spatial-Temporal Attention-Based Method and a New Dataset for Remote
Sensing Image Change Detection", Remote Sensing 2020):

- 637 pairs of 1024 x 1024 Google Earth RGB images at 0.5 m, split 445 / 64 / 128;
- every file of a split is named after it: ``train/A/train_1.png``, ``val/B/val_7.png``,
  ``test/label/test_12.png``; a pair shares one name in ``A``, ``B`` and ``label``;
- labels are 0 (no change) and 255 (building change).

A download is recognised by its three split folders of ``A/ B/ label/`` whose training files
are named ``train_*``; other ``A/ B/ label/`` split folders (such as the cropped WHU-CD) are
read the same way as plain split folders.
"""

from __future__ import annotations

import os
from pathlib import Path

from siamese_cd.data.layouts.registry import FolderLayout, register


@register
class LevirCD(FolderLayout):
    """LEVIR-CD: ``{train,val,test}/{A,B,label}``, files ``<split>_<n>.png``."""

    name = "LEVIR-CD"
    folders = ("A", "B", "label")
    splits = ("train", "val", "test")
    names_split_folders = False  # an A/ B/ label/ split folder is "LEVIR-CD or WHU-CD"
    bands = "RGB (PNG, 1024 x 1024)"
    order = 21

    @classmethod
    def detect(cls, root: Path, scene_files=None) -> bool:
        base = cls.base(root)
        if base is None:
            return False
        with os.scandir(base / "train" / "A") as entries:
            return any(entry.name.startswith("train_") for entry in entries)
