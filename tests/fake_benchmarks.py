"""Small trees with the published folder and file names of the benchmarks, written by code.

One writer per benchmark, copying the names and quirks its registry class documents
(`siamese_cd.data.layouts.catalog`): LEVIR-CD's ``<split>_<n>.png`` names, LEVIR-CD+'s
``LEVIR-CD+/`` folder and missing validation split, S2Looking's extra ``label1/ label2/``,
CDD's ``ChangeDetectionDataset/Real/subset`` and JPEG masks, SECOND's colour-coded semantic
maps, and the WHU-CD release's one GeoTIFF pair per split. Images are 32 x 32 (WHU-CD: one
scene of 64 x 48 per split) with a changed square per pair, so tests can check masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32
# SECOND's colour map (see siamese_cd.data.layouts.catalog.second).
WHITE = (255, 255, 255)
BUILDING = (128, 0, 0)
LOW_VEGETATION = (0, 128, 0)
WATER = (0, 0, 255)


def change_square(index: int, size: int = SIZE) -> np.ndarray:
    """A (size, size) bool mask with a square of change that moves with `index`."""
    mask = np.zeros((size, size), bool)
    top = 2 + 3 * index
    mask[top : top + 8, 4 : 4 + 10] = True
    return mask


def _pair_images(index: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t1 = np.full((*mask.shape, 3), 40 + 10 * index, np.uint8)
    t2 = t1.copy()
    t2[mask] = 230
    return t1, t2


def _save(path: Path, array: np.ndarray, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


def write_folder_split(
    split_dir: Path,
    names: list[str],
    folders: tuple[str, str, str],
    ext: str = ".png",
    label_ext: str | None = None,
) -> list[np.ndarray]:
    """Write pairs named `names` into three folders; returns their change masks (bool)."""
    masks = []
    for index, name in enumerate(names):
        mask = change_square(index)
        t1, t2 = _pair_images(index, mask)
        label = mask.astype(np.uint8) * 255
        for folder, array, suffix in zip(folders, (t1, t2, label), (ext, ext, label_ext or ext)):
            _save(split_dir / folder / f"{name}{suffix}", array)
        masks.append(mask)
    return masks


def write_levir_cd(root: Path, per_split: int = 2) -> Path:
    """LEVIR-CD: ``{train,val,test}/{A,B,label}/<split>_<n>.png``, labels 0/255."""
    for split in ("train", "val", "test"):
        names = [f"{split}_{n}" for n in range(1, per_split + 1)]
        write_folder_split(root / split, names, ("A", "B", "label"))
    return root


def write_levir_cd_plus(root: Path, train: int = 3, test: int = 2) -> Path:
    """LEVIR-CD+: ``LEVIR-CD+/{train,test}/{A,B,label}/<name>.png``; no validation split."""
    for split, count in (("train", train), ("test", test)):
        names = [f"{split}_{n}" for n in range(1, count + 1)]
        write_folder_split(root / "LEVIR-CD+" / split, names, ("A", "B", "label"))
    return root


def write_s2looking(root: Path, per_split: int = 2) -> Path:
    """S2Looking: ``S2Looking/{train,val,test}/{Image1,Image2,label,label1,label2}``.

    ``label1`` and ``label2`` (new and demolished buildings) hold other shapes than ``label``,
    so a reader taking them for the change label would be caught.
    """
    for split in ("train", "val", "test"):
        names = [str(n) for n in range(1, per_split + 1)]
        split_dir = root / "S2Looking" / split
        write_folder_split(split_dir, names, ("Image1", "Image2", "label"))
        for name in names:
            for folder in ("label1", "label2"):
                _save(split_dir / folder / f"{name}.png", np.full((SIZE, SIZE), 255, np.uint8))
    return root


def write_cdd(root: Path, per_split: int = 2) -> Path:
    """CDD: ``ChangeDetectionDataset/Real/subset/{train,val,test}/{A,B,OUT}/<n>.jpg``.

    Images and masks are JPEG (the masks get compression noise); ``Model/`` holds the
    synthetic part of the download, which is not the benchmark.
    """
    download = root / "ChangeDetectionDataset"
    for split in ("train", "val", "test"):
        names = [f"{n:05d}" for n in range(per_split)]
        write_folder_split(download / "Real" / "subset" / split, names, ("A", "B", "OUT"), ".jpg")
    write_folder_split(download / "Model" / "train", ["00000"], ("A", "B", "OUT"), ".jpg")
    return download


def second_map(mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """A SECOND label map: white where unchanged, `colour` (a land cover) where changed."""
    array = np.empty((*mask.shape, 3), np.uint8)
    array[...] = WHITE
    array[mask] = colour
    return array


def write_second(root: Path, train: int = 3, test: int = 2, indices: bool = False) -> Path:
    """SECOND: ``{train,test}/{im1,im2,label1,label2}/<nnnnn>.png``, colour-coded maps.

    A changed pixel is building in ``label1`` and low vegetation in ``label2`` (half of the
    square is water in ``label2``); with `indices` the maps hold class numbers (0 unchanged).
    """
    for split, count in (("train", train), ("test", test)):
        for index in range(count):
            name = f"{index:05d}.png"
            mask = change_square(index)
            t1, t2 = _pair_images(index, mask)
            before, after = second_map(mask, BUILDING), second_map(mask, LOW_VEGETATION)
            after[mask & (np.arange(SIZE)[None, :] < 9)] = WATER
            if indices:
                before = (mask * 5).astype(np.uint8)  # 5: building
                after = (mask * 3).astype(np.uint8)  # 3: low vegetation
            for folder, array in (("im1", t1), ("im2", t2), ("label1", before), ("label2", after)):
                _save(root / split / folder / name, array)
    return root


def write_whu_cd(root: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """The WHU-CD release: ``Building change detection dataset_add/1. The two-period image
    data/`` with one GeoTIFF per date and split, the change masks, and the building masks and
    512-px crops that are not the change label. Needs rasterio."""
    from tests.fakes import write_geotiff

    data = root / "Building change detection dataset_add" / "1. The two-period image data"
    height, width = size
    for split, shift in (("train", 0), ("test", 7)):
        change = np.zeros(size, bool)
        change[10 + shift : 20 + shift, 5:25] = True
        change[height - 6 : height - 2, 30:40] = True  # inside the validation rows of train
        t1 = np.full((height, width, 3), 60, np.uint8)
        t2 = t1.copy()
        t2[change] = 220
        for year, image in (("2012", t1), ("2016", t2)):
            whole = data / year / "whole_image" / split
            write_geotiff(whole / "image" / f"{year}_{split}.tif", image)
            building = np.full((height, width, 1), 255, np.uint8)  # a building mask: not change
            write_geotiff(whole / "label" / f"{year}_{split}.tif", building)
            write_geotiff(data / year / "splited_images" / split / "image" / "0_0.tif", image)
        label = (change * 255).astype(np.uint8)[..., None]
        write_geotiff(data / "change_label" / split / "change_label.tif", label)
    return root
