"""CDD, the season-varying change detection dataset, as its "SVCD" subset is distributed.

Facts (sources: the dataset's README in ChenHongruixuan/ChangeDetectionRepository
``Dataset/SVCD``; Open-CD's ``SVCD_Dataset`` (``A``/``B`` images, ``.jpg`` images and labels);
public loaders reading ``<CDD>/Real/subset/{train,val,test}/{A,B,OUT}``; Lebedev et al.,
ISPRS Archives 2018):

- the download unpacks into ``ChangeDetectionDataset/`` holding ``Model/`` (synthetic images)
  and ``Real/``; the benchmark is ``Real/subset/{train,val,test}``, each with ``A/`` (first
  date), ``B/`` (second date) and ``OUT/`` (change masks);
- 10,000 / 3,000 / 3,000 pairs of 256 x 256 RGB crops of Google Earth images;
- images and masks are JPEG: a mask is white (255) where changed and black elsewhere, with
  compression noise around edges, so masks are thresholded (``label_threshold``, 128 by
  default) and ``siamese-cd check`` accepts values near 0 and 255.

Give the ``ChangeDetectionDataset`` folder, ``Real``, ``Real/subset``, or a split folder.
"""

from __future__ import annotations

from siamese_cd.data.layouts.registry import FolderLayout, register


@register
class Cdd(FolderLayout):
    """CDD (SVCD subset): ``Real/subset/{train,val,test}/{A,B,OUT}``, JPEG."""

    name = "CDD"
    folders = ("A", "B", "OUT")
    splits = ("train", "val", "test")
    roots = ("", "subset", "Real/subset", "ChangeDetectionDataset/Real/subset")
    bands = "RGB (JPEG, 256 x 256)"
    order = 40
