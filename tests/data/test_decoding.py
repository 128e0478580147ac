import struct
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from siamese_cd.data.readers import decoding
from siamese_cd.data.readers.decoding import (
    image_size,
    pixel_scale,
    read_image,
    read_label,
)
from siamese_cd.errors import DatasetError, ImageReadError
from tests.fakes import write_geotiff


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


def test_16_bit_pixels_read_as_stored(tmp_path):
    array = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(array).save(tmp_path / "w.png")
    image = read_image(tmp_path / "w.png", grayscale="keep")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image[..., 0], array)


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


# Adam7 passes as (x0, y0, dx, dy).
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def write_png(path, array, interlace=False):
    """Write (H, W[, C]) uint8 or uint16 pixels as a PNG, 8 or 16 bits per sample, by hand.

    Pillow cannot write 16-bit colour PNGs or interlaced ones.
    """
    pixels = array if array.ndim == 3 else array[..., None]
    height, width, bands = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    stored = pixels.astype(">u2" if depth == 16 else np.uint8)
    images = [stored[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlace else [stored]
    raw = b"".join(b"\x00" + part[y].tobytes() for part in images for y in range(part.shape[0]))

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[bands]
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, int(interlace))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("bands", [1, 2, 3, 4])
def test_16_bit_png_of_any_colour_type_reads_every_bit(tmp_path, bands, monkeypatch):
    monkeypatch.setattr(decoding, "_warned_alpha", {str(tmp_path)})
    array = np.random.default_rng(bands).integers(0, 65536, (5, 7, bands)).astype(np.uint16)
    path = write_png(tmp_path / "w.png", array)
    image = read_image(path, grayscale="keep")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, array[..., : 3 if bands >= 3 else 1])


def test_interlaced_png_reads_and_16_bit_colour_is_refused_not_truncated(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (13, 11, 3)).astype(np.uint8)
    np.testing.assert_array_equal(read_image(write_png(tmp_path / "i.png", array, True)), array)
    path = write_png(tmp_path / "rgb16.png", np.full((2, 3, 3), 3000, np.uint16), True)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: an interlaced 16-bit RGB PNG") and "TIFF" in message


def pillow_kinds(rng):
    """PNGs of every kind Pillow writes, as (name, Pillow image, save options)."""
    rgb = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (6, 5, 4), dtype=np.uint8))
    gray = Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8))
    return [
        ("L", gray, {}),
        ("RGB", rgb, {}),
        ("RGBA", rgba, {}),
        ("LA", rgba.convert("LA"), {}),
        ("P", rgb.convert("P"), {}),
        ("1", gray.convert("1"), {}),
        ("I;16", Image.fromarray(rng.integers(0, 65536, (6, 5)).astype(np.uint16)), {}),
        ("RGB+tRNS", rgb, {"transparency": (1, 2, 3)}),
        ("L+tRNS", gray, {"transparency": 5}),
    ]


def refuse_pillow(*args, **kwargs):
    raise AssertionError("Pillow used")


def test_libpng_and_pillow_give_the_same_pixels(tmp_path, monkeypatch):
    """Plain PNGs go to libpng, the rest to Pillow; both give what Pillow alone gives."""
    monkeypatch.setattr(decoding, "_warned_alpha", {str(tmp_path)})
    pillow_only = {"P", "1"}
    for name, image, options in pillow_kinds(np.random.default_rng(3)):
        path = tmp_path / "k.png"
        image.save(path, **options)
        expected = read_image(path, grayscale="keep")
        expected_label = decoding.read_label_values(path)
        with monkeypatch.context() as patch:
            patch.setattr(decoding, "_decode_png", lambda path, data: None)
            np.testing.assert_array_equal(read_image(path, grayscale="keep"), expected, name)
            np.testing.assert_array_equal(decoding.read_label_values(path), expected_label)
        with monkeypatch.context() as patch:
            patch.setattr(decoding, "_open_pillow", refuse_pillow)
            if name in pillow_only:
                with pytest.raises(AssertionError):
                    read_image(path)
            else:
                np.testing.assert_array_equal(read_image(path, grayscale="keep"), expected)


def test_corrupt_png_data_error_names_the_file(tmp_path):
    path = save(
        tmp_path / "c.png", np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    )
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside the compressed pixel data
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"c\.png: cannot decode image"):
        read_image(path)
    with pytest.raises(ImageReadError, match=r"c\.png: cannot decode image"):
        read_label(path)


def test_jpeg_named_png_is_read_by_its_content(tmp_path):
    array = np.full((8, 8, 3), 120, np.uint8)
    path = tmp_path / "j.png"
    Image.fromarray(array).save(path, format="JPEG", quality=95)
    assert np.abs(read_image(path).astype(int) - 120).max() <= 2


def test_grayscale_expanded_or_kept(tmp_path):
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    path = save(tmp_path / "g.png", gray)
    assert read_image(path).shape == (2, 2, 3)
    kept = read_image(path, grayscale="keep")
    assert kept.shape == (2, 2, 1)
    np.testing.assert_array_equal(kept[..., 0], gray)
    wide = np.array([[0, 65535]], np.uint16)
    Image.fromarray(wide).save(tmp_path / "w.png")
    kept = read_image(tmp_path / "w.png", grayscale="keep")
    assert kept.dtype == np.uint16 and kept.shape == (1, 2, 1)


def test_bands_select_by_number_from_one(tmp_path):
    rgb = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    path = save(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_image(path, bands=(3, 1)), rgb[..., [2, 0]])
    with pytest.raises(ImageReadError) as info:
        read_image(path, bands=(4,))
    assert str(path) in str(info.value) and "band 4 requested" in str(info.value)
    assert "has 3 band(s)" in str(info.value)
    with pytest.raises(DatasetError, match="counts from 1"):
        read_image(path, bands=(0, 1))


def test_window_reads_part_and_refuses_outside(tmp_path):
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = save(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_image(path, window=(1, 2, 2, 3)), rgb[1:3, 2:5])
    with pytest.raises(ImageReadError, match=r"a\.png: window .* outside"):
        read_image(path, window=(3, 0, 2, 2))


def test_image_size_reads_the_header(tmp_path):
    path = save(tmp_path / "a.png", np.zeros((7, 9, 3), np.uint8))
    assert image_size(path) == (7, 9)


def test_multiband_geotiff_with_bands_and_window(tmp_path):
    array = np.random.default_rng(0).integers(0, 4000, (6, 8, 5)).astype(np.uint16)
    path = write_geotiff(tmp_path / "ms.tif", array)
    image = read_image(path)
    assert image.dtype == np.uint16 and image.shape == (6, 8, 5)
    np.testing.assert_array_equal(image, array)
    np.testing.assert_array_equal(read_image(path, bands=(5, 2)), array[..., [4, 1]])
    np.testing.assert_array_equal(read_image(path, window=(1, 2, 3, 4)), array[1:4, 2:6])
    assert image_size(path) == (6, 8)
    with pytest.raises(ImageReadError, match=r"ms\.tif: band 6 requested .* has 5 band"):
        read_image(path, bands=(6,))


def test_an_rgba_tiff_keeps_its_4th_band_as_data(tmp_path, monkeypatch):
    """A TIFF's bands are all data: Pillow's RGBA TIFF (ExtraSamples = alpha) reads as 4
    bands, without an alpha warning; the same pixels as a PNG lose their alpha."""
    pytest.importorskip("rasterio")
    monkeypatch.setattr(decoding, "_warned_alpha", set())
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 90, 7
    save(tmp_path / "a.tif", rgba)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(tmp_path / "a.tif")
    np.testing.assert_array_equal(image, rgba)
    (tmp_path / "png").mkdir()  # another folder: the alpha warning is said once per folder
    save(tmp_path / "png" / "a.png", rgba)
    with pytest.warns(UserWarning, match="alpha band dropped"):
        assert read_image(tmp_path / "png" / "a.png").shape == (3, 3, 3)


def test_tif_without_rasterio_says_how_to_install(tmp_path, monkeypatch):
    path = save(tmp_path / "x.tif", np.zeros((2, 2, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "rasterio", None)  # makes `import rasterio` fail
    for read in (read_image, read_label, image_size):
        with pytest.raises(ImageReadError) as info:
            read(path)
        message = str(info.value)
        assert str(path) in message and "needs rasterio" in message
        assert "pip install 'siamese_cd[geo]'" in message


def test_truncated_tiff_error_names_it(tmp_path):
    pytest.importorskip("rasterio")
    path = write_geotiff(tmp_path / "t.tif", np.ones((64, 64, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageReadError, match=r"t\.tif: cannot"):
        read_image(path)


def test_tiff_label_through_rasterio(tmp_path):
    label = np.array([[[0], [255], [255]]], np.uint8)
    path = write_geotiff(tmp_path / "l.tif", label)
    np.testing.assert_array_equal(read_label(path), [[0, 1, 1]])


def test_jpeg_label_is_thresholded_never_read_as_0_1(tmp_path):
    # A JPEG of an unchanged scene whose noise left only 0s and 1s is still "no change".
    noise = np.zeros((16, 16), np.uint8)
    noise[::3, ::2] = 1
    Image.fromarray(noise).save(tmp_path / "n.jpg", quality=100)
    assert read_label(tmp_path / "n.jpg").sum() == 0
    square = np.zeros((16, 16), np.uint8)
    square[4:12, 4:12] = 255
    Image.fromarray(square).save(tmp_path / "s.jpg", quality=70)
    mask = read_label(tmp_path / "s.jpg")
    assert mask[5:11, 5:11].all() and not mask[:3].any()


def test_pixel_scale_refuses_types_without_a_maximum():
    assert pixel_scale(np.uint8) == 255 and pixel_scale(np.uint16) == 65535
    with pytest.raises(ImageReadError, match=r"s2\.tif: float32 pixels have no fixed max.*16-bit"):
        pixel_scale(np.float32, "s2.tif")


def test_transparent_colour_is_not_an_alpha_band(tmp_path, monkeypatch):
    """A tRNS chunk (one colour marked transparent) adds no band and no alpha warning."""
    monkeypatch.setattr(decoding, "_warned_alpha", set())
    rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "t.png", transparency=(1, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_image(tmp_path / "t.png"), rgb)


def test_decode_into_fills_the_slot_or_returns_the_image(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    path = save(tmp_path / "a.png", rgb)
    slot = np.zeros((6, 5, 3), np.uint8)
    assert decoding.decode_into(path, slot) is None
    np.testing.assert_array_equal(slot, rgb)
    # Gray expanded to 3 bands cannot be decoded in place: decoded, then copied.
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    assert decoding.decode_into(save(tmp_path / "g.png", gray), slot) is None
    np.testing.assert_array_equal(slot, np.repeat(gray[..., None], 3, axis=-1))
    kept = np.zeros((6, 5, 1), np.uint8)
    assert decoding.decode_into(tmp_path / "g.png", kept, grayscale="keep") is None
    np.testing.assert_array_equal(kept[..., 0], gray)
    # Another size or type: the image comes back and the slot is untouched.
    wrong = np.full((4, 5, 3), 7, np.uint8)
    returned = decoding.decode_into(path, wrong)
    np.testing.assert_array_equal(returned, rgb)
    assert (wrong == 7).all()
    wide = np.zeros((6, 5, 3), np.uint16)
    assert decoding.decode_into(path, wide).dtype == np.uint8 and not wide.any()
