import numpy as np
import pytest

from siamese_cd.data.sampling.augment import Augment


def asymmetric_sample(size=16):
    t1 = np.zeros((size, size, 3), np.uint8)
    t1[2:6, 1:9] = 200  # an asymmetric block, so every flip and rotation shows
    mask = (t1[..., 0] > 0).astype(np.uint8)
    return t1, t1.copy(), mask


def test_geometric_parts_move_images_and_mask_together():
    t1, t2, mask = asymmetric_sample()
    augment = Augment(scale=(0.5, 1.0))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        a1, a2, m = augment(t1, t2, mask, rng)
        assert a1.shape == t1.shape and m.shape == mask.shape
        assert a1.flags["C_CONTIGUOUS"] and a1.dtype == np.uint8
        np.testing.assert_array_equal(a1, a2)
        assert set(np.unique(m)) <= {0, 1}  # still exactly binary
        # Nearest-neighbour mask and bilinear images agree away from the block's edges.
        assert (a1[..., 0][m == 1] > 0).all()
        seen.add(m.tobytes())
    assert len(seen) > 10


def test_zoom_crops_and_resizes_back():
    t1 = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16, 1) * 100
    mask = np.zeros((16, 16), np.uint8)
    augment = Augment(flip=False, rotate=False, scale=(0.5, 0.5))
    a1, _, m = augment(t1, t1, mask, np.random.default_rng(1))
    assert a1.shape == (16, 16, 1) and a1.dtype == np.uint16
    # An 8x8 window blown up 2x: neighbouring output pixels step by half an input step.
    assert a1.max() - a1.min() < t1.max() - t1.min()


def test_radiometric_jitter_differs_per_date_and_stays_in_range():
    augment = Augment(
        flip=False,
        rotate=False,
        brightness=0.2,
        contrast=0.2,
        gamma=0.2,
        hue=0.1,
        saturation=0.3,
        noise=0.02,
    )
    assert augment.radiometric and augment.needs_rgb
    rng = np.random.default_rng(0)
    base = np.random.default_rng(1).uniform(0.2, 0.8, (8, 8, 3)).astype(np.float32)
    one = augment.jitter(base.copy(), rng)
    two = augment.jitter(base.copy(), rng)
    assert one.dtype == np.float32 and 0 <= one.min() and one.max() <= 1
    assert not np.allclose(one, two) and not np.allclose(one, base)
    with pytest.raises(ValueError, match="3-band"):
        augment.jitter(np.zeros((4, 4, 4), np.float32), rng)


def test_hue_rotation_keeps_gray_gray():
    gray = np.full((4, 4, 3), 0.5, np.float32)
    out = Augment(hue=0.5).jitter(gray.copy(), np.random.default_rng(0))
    np.testing.assert_allclose(out, gray, atol=1e-5)


def test_date_swap():
    t1 = np.zeros((4, 4, 3), np.uint8)
    t2 = np.ones((4, 4, 3), np.uint8)
    a1, a2, _ = Augment(flip=False, rotate=False, swap=1.0)(t1, t2, None, np.random.default_rng(0))
    assert a1.max() == 1 and a2.max() == 0


def test_seeded_and_reproducible():
    t1, t2, mask = asymmetric_sample()
    augment = Augment(scale=(0.6, 1.0), swap=0.5)
    first = augment(t1, t2, mask, np.random.default_rng(42))
    again = augment(t1, t2, mask, np.random.default_rng(42))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [{"scale": (0.0, 1.0)}, {"scale": (0.9, 0.5)}, {"brightness": -0.1}, {"swap": 2.0}],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        Augment(**kwargs)


def test_config_round_trip_and_repr():
    augment = Augment(scale=(0.8, 1.0), brightness=0.1, swap=0.5)
    assert Augment.from_config(augment.get_config()).get_config() == augment.get_config()
    assert repr(Augment()) == "Augment(flip=True, rotate=True)"
    assert "brightness=0.1" in repr(augment) and "scale=[0.8, 1.0]" in repr(augment)
