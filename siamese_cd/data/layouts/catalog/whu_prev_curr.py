"""Split folders with ``prev/ curr/ label/``: a WHU-CD copy cut into tiles.

Some redistributions of the WHU building change detection tiles name the dates ``prev`` and
``curr``. The official release is read by `siamese_cd.data.layouts.catalog.whu_cd`.
"""

from __future__ import annotations

from siamese_cd.data.layouts.registry import FolderLayout, register


@register
class WhuPrevCurr(FolderLayout):
    """A split folder of ``prev/ curr/ label/`` (WHU-CD tiles)."""

    name = "WHU-CD"
    folders = ("prev", "curr", "label")
    order = 30
