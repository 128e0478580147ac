"""S2Looking: ``train/ val/ test/``, each with ``Image1/ Image2/ label/`` (and ``label1/ label2/``).

Facts (sources: Shen et al., "S2Looking: A Satellite Side-Looking Dataset for Building Change
Detection", Remote Sensing 2021; Open-CD's ``S2Looking_Dataset`` (``sub_dir_1='Image1'``,
``sub_dir_2='Image2'``, ``.png`` images and labels) and its data preparation notes
(``S2Looking/{train,val,test}/{Image1,Image2,label}``, labels 0/255)):

- 5,000 pairs of 1024 x 1024 side-looking satellite RGB images at 0.5-0.8 m, split 3,500 /
  500 / 1,000, PNG;
- ``label/`` is the change mask (0 no change, 255 change); ``label1/`` and ``label2/`` are the
  separate maps of newly built and of demolished buildings, not the change label: they are
  not read.

Give the ``S2Looking`` folder, the folder holding it, or a split folder.
"""

from __future__ import annotations

from siamese_cd.data.layouts.registry import FolderLayout, register


@register
class S2Looking(FolderLayout):
    """S2Looking: ``{train,val,test}/{Image1,Image2,label}``; label1/label2 are not read."""

    name = "S2Looking"
    folders = ("Image1", "Image2", "label")
    splits = ("train", "val", "test")
    roots = ("", "S2Looking")
    bands = "RGB (PNG, 1024 x 1024)"
    order = 50
