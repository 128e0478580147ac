"""Split folders with ``A/ B/ label/``: LEVIR-CD, LEVIR-CD+ and the cropped WHU-CD copies.

The split-folder name is ``"LEVIR-CD or WHU-CD"``: the folders alone do not tell them apart.
Downloads are recognised by `siamese_cd.data.layouts.catalog.levir_cd` and
`siamese_cd.data.layouts.catalog.levir_cd_plus`; the 256 x 256 WHU-CD crops many works
share (``train/ val/ test/`` of ``A/ B/ label/``) are read as plain split folders.
"""

from __future__ import annotations

from siamese_cd.data.layouts.registry import FolderLayout, register


@register
class LevirOrWhu(FolderLayout):
    """A split folder of ``A/ B/ label/`` (LEVIR-CD, LEVIR-CD+, cropped WHU-CD)."""

    name = "LEVIR-CD or WHU-CD"
    folders = ("A", "B", "label")
    order = 20
