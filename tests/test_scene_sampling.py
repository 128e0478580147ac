"""samples_per_scene and min_change: epochs of K crops per scene, deterministic with a seed."""

import numpy as np
import pytest

from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import DatasetError
from tests.fakes import make_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("split"), count=3, size=64)


def windows_of(data):
    """Every sample's crop in one epoch, as (t1 level, mask sum) per sample."""
    out = []
    for index in range(len(data)):
        (t1, _), mask = data[index]
        out += [(int(t1[k, 0, 0, 0]), int(mask[k].sum())) for k in range(len(t1))]
    return out


def test_an_epoch_is_k_crops_per_scene(split):
    data = PairedImageDataset(
        split, crop_size=16, samples_per_scene=5, batch_size=4, progress=False
    )
    assert data.num_samples == 15 and len(data) == 4
    levels = [level for level, _ in windows_of(data)]
    assert levels == [10] * 5 + [15] * 5 + [20] * 5  # sample k is a crop of scene k // 5


def test_crops_are_deterministic_with_a_seed_and_differ_between_epochs(split):
    def make(seed):
        return PairedImageDataset(
            split, crop_size=16, samples_per_scene=4, batch_size=6, shuffle=True,
            seed=seed, progress=False,
        )  # fmt: skip

    a, b = make(3), make(3)
    first = windows_of(a)
    assert first == windows_of(b)
    a.on_epoch_end()
    assert windows_of(a) != first


def test_min_change_draws_crops_with_enough_change(split):
    data = PairedImageDataset(
        split, crop_size=16, samples_per_scene=6, min_change=0.2, batch_size=6, seed=0,
        progress=False,
    )  # fmt: skip
    (t1, _), mask = data[0]  # scene 0 has a changed 16x16 square: 20 % is reachable
    assert all(mask[k].mean() >= 0.2 for k in range(6))
    again = PairedImageDataset(
        split, crop_size=16, samples_per_scene=6, min_change=0.2, batch_size=6, seed=0,
        progress=False,
    )  # fmt: skip
    assert np.array_equal(again[0][1], mask)
    # Scene 2 has no change: after the bounded draws a crop is kept anyway.
    assert data[2][1].shape == (6, 16, 16, 1)


def test_tf_dataset_has_the_same_epoch_length(split):
    data = PairedImageDataset(
        split, crop_size=16, samples_per_scene=5, min_change=0.1, batch_size=4, seed=1,
        progress=False,
    )  # fmt: skip
    batches = list(data.as_tf_dataset())
    assert sum(len(mask) for _, mask in batches) == 15
    assert all(float(mask.numpy()[k].mean()) >= 0.1 for _, mask in batches[:1] for k in range(4))


def test_bad_options_are_errors(split):
    with pytest.raises(DatasetError, match="crop_size"):
        PairedImageDataset(split, samples_per_scene=2, progress=False)
    with pytest.raises(DatasetError, match="min_change"):
        PairedImageDataset(split, crop_size=16, min_change=1.5, progress=False)
    with pytest.raises(DatasetError, match="samples_per_scene"):
        PairedImageDataset(split, crop_size=16, samples_per_scene=0, progress=False)
