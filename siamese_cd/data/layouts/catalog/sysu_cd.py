"""SYSU-CD: split folders ``train/ val/ test/``, each with ``time1/ time2/ label/``.

Facts (sources: the SYSU-CD paper, Shi et al., "A Deeply Supervised Attention Metric-Based
Network and an Open Aerial Image Dataset for Remote Sensing Change Detection", TGRS 2021,
and its github.com/liumency/SYSU-CD release):
20,000 pairs of 256 x 256 aerial RGB images split 12,000 / 4,000 / 4,000; labels are 0/255
PNG masks. ``time1/ time2/ label/`` is also this library's own split-folder layout (the
synthetic dataset writes it).
"""

from __future__ import annotations

from siamese_cd.data.layouts.registry import FolderLayout, register


@register
class SysuCD(FolderLayout):
    """SYSU-CD: ``time1/ time2/ label/`` split folders; train, val and test."""

    name = "SYSU-CD"
    folders = ("time1", "time2", "label")
    splits = ("train", "val", "test")
    bands = "RGB (PNG, 256 x 256)"
    order = 10
