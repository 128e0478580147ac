"""SECOND: binary change read from its two semantic label maps.

Facts (sources: Yang et al., "Asymmetric Siamese Networks for Semantic Change Detection in
Aerial Images", TGRS 2021, which published it; Open-CD's ``SECOND_Dataset`` (``.png`` images and
labels; semantic palette ``unchanged (255, 255, 255), water (0, 0, 255), ground (128, 128, 128),
low vegetation (0, 128, 0), tree (0, 255, 0), building (128, 0, 0), sports field (255, 0, 0)``);
the SCanNet/Bi-SRNet loaders, which read ``<split>/{im1,im2,label1,label2}/<name>.png`` with
the same colour map):

- a split folder holds ``im1/`` and ``im2/`` (the two dates) and ``label1/`` and ``label2/``
  (one land-cover map per date), 512 x 512 PNG, one name per pair in all four;
- 4,662 pairs, 2,968 for training and 1,694 for testing; the public release holds the
  training pairs (``SECOND_train_set``), so many works hold out part of them;
- the label maps are RGB colour maps: a pixel that did not change is white (255, 255, 255) in
  both maps, and a changed pixel carries its land-cover colour (never white) in both.

So the binary change mask is "not white": a pixel changed where ``label1`` or ``label2`` is not
(255, 255, 255). Copies that store class indices instead (one band, 0 for unchanged) are read
too: a pixel changed where an index is not 0. A download is ``train/`` and ``test/`` split
folders (training then holds out a tenth of ``train`` for validation); a split folder alone
(``SECOND_train_set``) is read as a split.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from siamese_cd.data.layouts.pairing import PairList, list_images
from siamese_cd.data.layouts.registry import FolderLayout, register
from siamese_cd.data.pipeline.source import SampleSource
from siamese_cd.data.readers.decoding import Window, read_image
from siamese_cd.errors import DatasetError, ImageReadError, PairingError

# The colour of "no change" in SECOND's RGB label maps.
NO_CHANGE = (255, 255, 255)
SECOND_LABEL = "label2"


def second_label(label1: Path) -> Path:
    """The ``label2`` map of a pair, beside its ``label1`` map (same name)."""
    return label1.parent.parent / SECOND_LABEL / label1.name


def changed(path: Path, window: Window | None = None) -> np.ndarray:
    """Where one SECOND label map is not "no change", as an (H, W) bool array."""
    values = read_image(path, grayscale="keep", window=window)
    if values.shape[-1] == 1:  # class indices: 0 is unchanged
        return values[..., 0] != 0
    if values.shape[-1] < 3:
        raise ImageReadError(f"{path}: a SECOND label has 1 band (indices) or 3 (colours)")
    return np.any(values[..., :3] != np.array(NO_CHANGE, values.dtype), axis=-1)


def change_mask(label1: Path, window: Window | None = None) -> np.ndarray:
    """The (H, W) uint8 0/1 change mask of a pair from its ``label1`` and ``label2`` maps.

    Raises:
        ImageReadError: if a map cannot be read, or the two differ in size.
    """
    label2 = second_label(Path(label1))
    first, second = changed(Path(label1), window), changed(label2, window)
    if first.shape != second.shape:
        raise ImageReadError(
            f"{label1} {first.shape} and {label2} {second.shape}: the label maps differ in size"
        )
    return (first | second).astype(np.uint8)


class SecondSource(SampleSource):
    """A `SampleSource` whose masks are SECOND's change, from ``label1`` and ``label2``.

    The label files are not the masks, so they are never decoded straight into batches or by
    TensorFlow (``files_are_samples = False``).
    """

    files_are_samples = False

    def decode_options(self) -> dict:
        # The decoded cache's fingerprint covers the pairs' files, which do not include the
        # label2 maps: they are hashed here (paths, sizes, times), so editing one rebuilds it.
        digest = hashlib.sha256()
        for pair in self.pairs:
            path = second_label(pair.label)
            try:
                stat = os.stat(path)
            except OSError as error:
                raise DatasetError(f"{path}: cannot read file information ({error})") from error
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {
            **super().decode_options(),
            "labels": "SECOND label1 or label2 not white",
            "label2": digest.hexdigest(),
        }

    def read_label(self, path: Path, window: Window | None = None) -> np.ndarray:
        return change_mask(path, window)


@register
class Second(FolderLayout):
    """SECOND: ``{train,test}/{im1,im2,label1,label2}``; change where a map is not white."""

    name = "SECOND"
    folders = ("im1", "im2", "label1")
    splits = ("train", "test")
    bands = "RGB (PNG, 512 x 512)"
    order = 60

    @classmethod
    def pairs(cls, split_dir: Path, on_missing: str = "error") -> PairList:
        """The pairs of ``im1/``, ``im2/`` and ``label1/``, each with its ``label2`` map.

        Raises:
            PairingError: if ``label2/`` is missing or lacks a pair's map (naming up to 10).
        """
        pairs = super().pairs(split_dir, on_missing)
        second = Path(split_dir) / SECOND_LABEL
        if not second.is_dir():
            raise PairingError(f"{split_dir}: no {SECOND_LABEL}/ folder beside label1/")
        present = {path.name for path in list_images(second).values()}
        missing = [pair.label.name for pair in pairs if pair.label.name not in present]
        if missing:
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise PairingError(
                f"{second}: no {SECOND_LABEL} map for {', '.join(missing[:10])}{more} "
                "(each pair needs label1 and label2 of the same name)"
            )
        return pairs

    @classmethod
    def source(cls, pairs: Sequence, **reading) -> SampleSource:
        return SecondSource(pairs, **reading)

    @classmethod
    def label_values(cls, path: Path) -> np.ndarray:
        return change_mask(path) * np.uint8(255)
