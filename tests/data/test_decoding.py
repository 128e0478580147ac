import warnings

import numpy as np
import pytest
from PIL import Image

from siamese_cd.data import decoding
from siamese_cd.data.decoding import read_image, read_label, to_unit_float
from siamese_cd.errors import ImageReadError


def save(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_label_threshold_0_255(tmp_path):
    label = np.array([[0, 127, 128, 255]], np.uint8)
    path = save(tmp_path / "l.png", label)
    np.testing.assert_array_equal(read_label(path), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(read_label(path, threshold=200), [[0, 0, 0, 1]])


def test_label_jpeg_noise_is_thresholded(tmp_path):
    label = np.array([[3, 12, 240, 251, 0, 255]], np.uint8)
    path = save(tmp_path / "l.png", label)
    np.testing.assert_array_equal(read_label(path), [[0, 0, 1, 1, 0, 1]])


def test_label_0_1_is_recognised(tmp_path):
    path = save(tmp_path / "l.png", np.array([[0, 1, 1, 0]], np.uint8))
    np.testing.assert_array_equal(read_label(path), [[0, 1, 1, 0]])


def test_label_rgb_uses_brightest_band(tmp_path):
    label = np.zeros((1, 3, 3), np.uint8)
    label[0, 1] = (255, 0, 0)
    label[0, 2] = (255, 255, 255)
    path = save(tmp_path / "l.png", label)
    np.testing.assert_array_equal(read_label(path), [[0, 1, 1]])


def test_rgb_and_grayscale_images(tmp_path):
    rgb = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(read_image(save(tmp_path / "a.png", rgb)), rgb)
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    out = read_image(save(tmp_path / "g.png", gray))
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[..., 2], gray)


def test_rgba_drops_alpha_and_warns_once_per_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(decoding, "_warned_alpha", set())
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 7
    save(tmp_path / "a.png", rgba)
    save(tmp_path / "b.png", rgba)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = read_image(tmp_path / "a.png")
        read_image(tmp_path / "b.png")
    assert a.shape == (2, 2, 3) and (a[..., 0] == 200).all()
    assert len(caught) == 1 and "alpha" in str(caught[0].message)


def test_16_bit_scales_by_dtype_max(tmp_path):
    array = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(array).save(tmp_path / "w.png")
    image = read_image(tmp_path / "w.png")
    assert image.dtype == np.uint16
    np.testing.assert_allclose(to_unit_float(image)[..., 0], array / 65535.0, rtol=1e-6)


def test_truncated_file_error_names_it(tmp_path):
    path = save(tmp_path / "t.png", np.zeros((32, 32, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ImageReadError, match=r"t\.png: cannot decode"):
        read_image(path)


def test_not_an_image_error_names_it(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("not a png")
    with pytest.raises(ImageReadError, match=r"x\.png: cannot decode"):
        read_label(path)


def test_to_unit_float():
    out = to_unit_float(np.array([0, 51, 255], np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.2, 1.0])
    with pytest.raises(TypeError):
        to_unit_float(np.array([0.5]))
