"""The synthetic generator: layout, determinism, manifest, argument checks and scene statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese_cd.data.synthetic.generate import MANIFEST_NAME, make_synthetic_dataset, render_pair
from siamese_cd.errors import DatasetError

COUNTS = {"train": 4, "val": 2, "test": 3}
SIZE = 32


def _generate(out: Path, **kwargs) -> Path:
    options = {**COUNTS, "size": SIZE, "seed": 1, "progress": False, **kwargs}
    return make_synthetic_dataset(out, **options)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("synth") / "out")


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [render_pair(np.random.default_rng([123, i]), 64) for i in range(60)]


def test_layout_and_names(dataset: Path) -> None:
    for split, n in COUNTS.items():
        for sub in ("time1", "time2", "label"):
            names = sorted(p.name for p in (dataset / split / sub).iterdir())
            assert names == [f"{i:05d}.png" for i in range(n)]


def test_image_modes_sizes_and_label_values(dataset: Path) -> None:
    for split in COUNTS:
        for path in (dataset / split / "label").iterdir():
            with Image.open(path) as label:
                assert label.mode == "L"
                assert label.size == (SIZE, SIZE)
                assert set(np.unique(np.asarray(label))) <= {0, 255}
            for sub in ("time1", "time2"):
                with Image.open(dataset / split / sub / path.name) as img:
                    assert img.mode == "RGB"
                    assert img.size == (SIZE, SIZE)


def test_render_pair_shapes_and_dtypes() -> None:
    t1, t2, label = render_pair(np.random.default_rng(0), 48)
    assert t1.shape == t2.shape == (48, 48, 3)
    assert label.shape == (48, 48)
    assert t1.dtype == t2.dtype == label.dtype == np.uint8


def test_same_seed_gives_identical_bytes(dataset: Path, tmp_path: Path) -> None:
    again = _generate(tmp_path / "again")
    assert _files(again) == _files(dataset)
    assert (again / MANIFEST_NAME).read_bytes() == (dataset / MANIFEST_NAME).read_bytes()


def test_different_seed_gives_different_content(dataset: Path, tmp_path: Path) -> None:
    other = _files(_generate(tmp_path / "other", seed=2))
    ours = _files(dataset)
    assert other.keys() == ours.keys()
    images = [k for k in ours if "label" not in k]
    assert all(other[k] != ours[k] for k in images)


def test_files_do_not_depend_on_other_counts(tmp_path: Path) -> None:
    small = _generate(tmp_path / "small", train=3, val=1, test=0)
    large = _generate(tmp_path / "large", train=5, val=4, test=2)
    for rel in ("train/time1/00000.png", "train/time2/00002.png", "val/label/00000.png"):
        assert (small / rel).read_bytes() == (large / rel).read_bytes()


def test_manifest_matches_written_files(dataset: Path) -> None:
    manifest = json.loads((dataset / MANIFEST_NAME).read_text())
    assert manifest["counts"] == COUNTS
    assert manifest["size"] == SIZE
    assert manifest["seed"] == 1
    assert isinstance(manifest["format_version"], int)
    for split in COUNTS:
        labels = [np.asarray(Image.open(p)) for p in (dataset / split / "label").iterdir()]
        expected = np.mean([np.mean(lab == 255) for lab in labels])
        assert manifest["changed_fraction"][split] == pytest.approx(expected, abs=1e-5)


def test_regeneration_overwrites_own_files_and_keeps_others(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "train" / "time1").mkdir(parents=True)
    (out / "train" / "time1" / "00000.png").write_bytes(b"not a png")
    (out / "notes.txt").write_text("keep me")
    (out / "train" / "time1" / "00099.png").write_bytes(b"stray")
    (out / MANIFEST_NAME).write_text('{"seed": 99}')
    with pytest.warns(UserWarning, match="left in place"):
        _generate(out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "train" / "time1" / "00099.png").exists()
    with Image.open(out / "train" / "time1" / "00000.png") as img:
        assert img.size == (SIZE, SIZE)
    assert json.loads((out / MANIFEST_NAME).read_text())["seed"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 40}, "multiple of 16"),
        ({"size": 0}, "multiple of 16"),
        ({"size": 32.0}, "size must be an integer"),
        ({"train": -1}, "train must be an integer >= 0"),
        ({"val": 1.5}, "val must be an integer >= 0"),
        ({"test": True}, "test must be an integer >= 0"),
        ({"seed": -3}, "seed must be an integer >= 0"),
    ],
)
def test_invalid_arguments_raise(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        _generate(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_out_dir_that_is_a_file_raises(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(DatasetError, match="not a folder"):
        _generate(target)


def _abs_diff(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    return np.abs(t1.astype(np.int16) - t2.astype(np.int16)).mean(axis=-1)


def test_nuisance_changes_are_not_labelled(pairs) -> None:
    changed = np.concatenate([_abs_diff(t1, t2)[lab == 255] for t1, t2, lab in pairs])
    unchanged = np.concatenate([_abs_diff(t1, t2)[lab == 0] for t1, t2, lab in pairs])
    # Illumination, season, noise and misregistration alter unchanged ground noticeably...
    assert unchanged.mean() > 8
    # ...yet real changes stand out on average.
    assert changed.mean() > 1.5 * unchanged.mean()
    # Thresholding the difference is no solution: its best F1 stays far from a trained model's.
    best_f1 = max(
        2 * (changed > t).sum() / ((changed > t).sum() + (unchanged > t).sum() + changed.size)
        for t in range(5, 120, 5)
    )
    assert best_f1 < 0.7


def test_pairs_without_change_still_differ(pairs) -> None:
    no_change = [(t1, t2) for t1, t2, lab in pairs if not lab.any()]
    assert no_change, "expected some pairs with an empty label"
    assert all(_abs_diff(t1, t2).mean() > 3 for t1, t2 in no_change)


def test_changed_fraction_is_sensible(pairs) -> None:
    fractions = [np.mean(lab == 255) for _, _, lab in pairs[:50]]
    assert 0.05 <= np.mean(fractions) <= 0.35
    # Most, but not all, pairs contain a change.
    assert 0.6 <= np.mean([f > 0 for f in fractions]) < 1


def test_multiband_16_bit_geotiffs_keep_the_change_plain_in_raw_units(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    from siamese_cd.data.pipeline.dataset import PairedImageDataset

    out = _generate(tmp_path / "geo", bands=4, dtype="uint16")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert (manifest["bands"], manifest["dtype"], manifest["format"]) == (4, "uint16", "tif")
    for split, n in COUNTS.items():
        for sub in ("time1", "time2", "label"):
            names = sorted(p.name for p in (out / split / sub).iterdir())
            assert names == [f"{i:05d}.tif" for i in range(n)]
    with rasterio.open(out / "train" / "time1" / "00000.tif") as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg()) == (4, "uint16", 32631)
        assert src.transform.a == 10.0  # 10 m pixels, georeferenced
    with rasterio.open(out / "train" / "label" / "00000.tif") as src:
        assert src.count == 1 and src.dtypes[0] == "uint8"
        assert set(np.unique(src.read(1))) <= {0, 255}

    # The same scenes as the 8-bit PNGs, as offset + 4 * value; the labels are identical.
    rgb = _generate(tmp_path / "rgb")
    data = PairedImageDataset(out / "train", batch_size=4)
    assert data.channels == 4 and data.pixel_dtype == np.uint16
    (t1, t2), mask = data[0]
    (r1, r2), rmask = PairedImageDataset(rgb / "train", batch_size=4)[0]
    np.testing.assert_array_equal(t1[..., :3], 1000 + 4 * r1.astype(np.uint16))
    np.testing.assert_array_equal(mask, rmask)
    assert 1000 <= t1.min() and t1.max() <= 2020 and 1200 < t1.mean() < 1800  # around 1,500
    # Plain in raw units: changed pixels differ between dates far more than unchanged ones.
    diff = np.abs(t1.astype(np.float64) - t2).mean(axis=-1)
    changed = mask[..., 0] > 0
    assert diff[changed].mean() > 1.5 * diff[~changed].mean()  # as for the 8-bit images


def test_pixel_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="bands must be an integer >= 1"):
        _generate(tmp_path / "a", bands=0)
    with pytest.raises(DatasetError, match="dtype must be 'uint8' or 'uint16'"):
        _generate(tmp_path / "b", dtype="float32")
