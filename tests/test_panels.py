import numpy as np
import pytest

from siamese_cd.training.panels import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    TRUE_POSITIVE,
    error_overlay,
    heat_map,
    make_panels,
    to_rgb_uint8,
)


def test_overlay_paints_exact_colours_in_the_right_pixels():
    t2 = np.full((1, 2, 3, 3), 77, np.uint8)
    # Columns: (truth, prediction) = tp, fp, fn in row 0; tn, tn, tp in row 1.
    truth = np.array([[1, 0, 1], [0, 0, 1]], np.float32).reshape(1, 2, 3, 1)
    pred = np.array([[1, 1, 0], [0, 0, 1]], np.float32).reshape(1, 2, 3, 1)
    out = error_overlay(t2, truth, pred)[0]
    assert TRUE_POSITIVE == (0, 255, 0)
    assert FALSE_POSITIVE == (255, 0, 0)
    assert FALSE_NEGATIVE == (0, 0, 255)
    assert tuple(out[0, 0]) == TRUE_POSITIVE
    assert tuple(out[0, 1]) == FALSE_POSITIVE
    assert tuple(out[0, 2]) == FALSE_NEGATIVE
    assert tuple(out[1, 0]) == tuple(out[1, 1]) == (77, 77, 77)  # true negatives show t2
    assert tuple(out[1, 2]) == TRUE_POSITIVE
    assert (t2 == 77).all()  # the input is not painted over


def test_panel_layout_and_content():
    n, h, w = 2, 4, 5
    t1 = np.full((n, h, w, 3), 0.2, np.float32)
    t2 = np.full((n, h, w, 3), 0.4, np.float32)
    truth = np.zeros((n, h, w, 1), np.float32)
    truth[:, 0, 0] = 1
    probability = np.full((n, h, w, 1), 0.3, np.float32)
    probability[:, 0, 0] = 0.9  # a true positive
    probability[:, 1, 1] = 0.6  # a false positive
    panels = make_panels(t1, t2, truth, probability)
    assert panels.shape == (n, h, 6 * w, 3) and panels.dtype == np.uint8
    tile = [panels[0, :, k * w : (k + 1) * w] for k in range(6)]
    assert (tile[0] == 51).all() and (tile[1] == 102).all()
    assert (tile[2][0, 0] == 255).all() and tile[2].sum() == 3 * 255
    assert (tile[3][0, 0] == 255).all() and (tile[3][1, 1] == 255).all()
    assert tile[3].sum() == 2 * 3 * 255
    assert tuple(tile[4][0, 0]) == TRUE_POSITIVE and tuple(tile[4][1, 1]) == FALSE_POSITIVE
    assert tuple(tile[4][2, 2]) == (102, 102, 102)
    assert tuple(tile[5][0, 0]) != tuple(tile[5][2, 2])  # heat map follows the probability


def test_heat_map_ends_are_viridis():
    values = np.array([0.0, 0.5, 1.0, 2.0, np.nan], np.float32).reshape(1, 1, 5, 1)
    out = heat_map(values)[0, 0]
    assert tuple(out[0]) == (68, 1, 84)
    assert tuple(out[1]) == (33, 145, 140)
    assert tuple(out[2]) == tuple(out[3]) == (253, 231, 37)  # clipped
    assert tuple(out[4]) == (68, 1, 84)  # NaN from a diverged model is drawn as 0


def test_multiband_rgb_choice_and_stretch():
    images = np.zeros((1, 2, 2, 5), np.float32)
    images[..., 3] = 0.5
    images[..., 1] = 1.0
    rgb = to_rgb_uint8(images, rgb_bands=(3, 1, 0))
    assert tuple(rgb[0, 0, 0]) == (128, 255, 0)
    gray = to_rgb_uint8(np.full((1, 2, 2, 1), 0.2, np.float32))
    assert tuple(gray[0, 0, 0]) == (51, 51, 51)
    dark = np.linspace(0.0, 0.1, 16, dtype=np.float32).reshape(1, 4, 4, 1).repeat(3, -1)
    stretched = to_rgb_uint8(dark, stretch=True)
    assert stretched.max() == 255 and stretched.min() == 0
    with pytest.raises(ValueError, match=r"rgb_bands \(0, 1, 7\) does not fit 5 bands"):
        to_rgb_uint8(images, rgb_bands=(0, 1, 7))


def test_raw_integer_pixels_are_shown_over_their_type_range():
    eight = np.full((1, 1, 1, 3), 128, np.uint8)
    assert tuple(to_rgb_uint8(eight)[0, 0, 0]) == (128, 128, 128)
    sixteen = np.full((1, 1, 1, 3), 65535 // 4, np.uint16)
    assert tuple(to_rgb_uint8(sixteen)[0, 0, 0]) == (64, 64, 64)
    # Dark 16-bit reflectances become readable with stretch.
    dark = np.arange(16, dtype=np.uint16).reshape(1, 4, 4, 1).repeat(3, -1) * 100 + 1000
    stretched = to_rgb_uint8(dark, stretch=True)
    assert stretched.min() == 0 and stretched.max() == 255


def test_floats_outside_unit_range_are_stretched_for_display():
    reflectance = np.linspace(0.0, 3000.0, 16, dtype=np.float32).reshape(1, 4, 4, 1)
    shown = to_rgb_uint8(reflectance.repeat(3, -1))
    assert shown.min() == 0 and shown.max() == 255
    assert np.all(np.diff(shown[0, ..., 0].reshape(-1).astype(int)) >= 0)  # order kept
