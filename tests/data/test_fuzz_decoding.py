"""A seeded fuzz loop over the decoders: broken files end in an error naming them, never a
crash, a hang or a silently wrong array; valid files decode to what was written."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from siamese_cd.data.readers.decoding import read_image, read_label
from siamese_cd.errors import ImageReadError

CASES = 400
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".gif": "GIF", ".tif": "TIFF"}


def _source(rng) -> tuple[np.ndarray, str, bytes]:
    """A valid image: random size (odd ones included), mode and format, and its bytes."""
    height, width = (int(v) for v in rng.choice([1, 2, 3, 7, 16, 33], 2))
    mode = rng.choice(["L", "RGB", "RGBA", "I;16", "P", "1"])
    ext = rng.choice([".png", ".jpg", ".bmp", ".gif"])
    if mode == "I;16":
        ext = ".png"
        array = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        image = Image.fromarray(array)
    else:
        bands = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1, "1": 1}[mode]
        array = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)
        array = array[..., 0] if bands == 1 else array
        image = Image.fromarray(array).convert(mode) if bands == 1 else Image.fromarray(array)
        if ext == ".jpg" and image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        if ext in (".gif",) and image.mode not in ("L", "P", "1"):
            image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=FORMATS[ext])
    return np.asarray(image), ext, buffer.getvalue()


def _damage(rng, data: bytes, ext: str) -> tuple[bytes, str, str]:
    """A damaged copy: (bytes, extension, what was done)."""
    kind = rng.choice(["truncate", "random", "flip", "extension", "empty", "header"])
    if kind == "truncate":
        return data[: int(rng.integers(0, max(1, len(data) - 1)))], ext, kind
    if kind == "random":
        return rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes(), ext, kind
    if kind == "flip":
        changed = bytearray(data)
        for _ in range(int(rng.integers(1, 8))):
            changed[int(rng.integers(0, len(changed)))] ^= int(rng.integers(1, 256))
        return bytes(changed), ext, kind
    if kind == "extension":  # valid bytes under another format's name
        return (
            data,
            rng.choice([e for e in (".png", ".jpg", ".bmp", ".tif", ".xyz") if e != ext]),
            kind,
        )
    if kind == "header":
        return data[:8] + rng.integers(0, 256, 64, dtype=np.uint8).tobytes(), ext, kind
    return b"", ext, kind


def test_decoders_fail_with_the_file_name_or_decode_correctly(tmp_path):
    rng = np.random.default_rng(2024)
    outcomes = {"decoded": 0, "named error": 0, "valid": 0}
    started = time.monotonic()
    for case in range(CASES):
        expected, ext, data = _source(rng)
        valid = case % 4 == 0
        kind = "valid"
        if not valid:
            data, ext, kind = _damage(rng, data, ext)
        path = tmp_path / f"case{case:04d}{ext}"
        path.write_bytes(data)
        for reader in (read_image, read_label):
            begun = time.monotonic()
            try:
                array = reader(path)
            except ImageReadError as error:
                assert str(path) in str(error), (case, kind, str(error))
                assert not valid, (case, str(error))
                outcomes["named error"] += 1
                continue
            finally:
                assert time.monotonic() - begun < 5, (case, kind, "too slow")
            assert array.shape[:2] == expected.shape[:2] or kind == "flip", (case, kind)
            if reader is read_image:
                assert array.dtype in (np.uint8, np.uint16) and array.ndim == 3, (case, kind)
            else:
                assert array.dtype == np.uint8 and set(np.unique(array)) <= {0, 1}, (case, kind)
            if valid and reader is read_image and ext in (".png", ".bmp", ".gif"):
                # Lossless formats give back exactly what was written.
                reference = expected if expected.ndim == 3 else expected[..., None]
                if reference.shape[-1] == 1:
                    reference = np.repeat(reference, 3, axis=-1)
                if reference.shape[-1] == 4:
                    reference = reference[..., :3]
                if expected.dtype != bool and Image.open(path).mode not in ("P", "1"):
                    np.testing.assert_array_equal(array, reference, err_msg=f"case {case}")
            outcomes["valid" if valid else "decoded"] += 1
    print(outcomes)
    assert outcomes["named error"] > CASES // 2 and outcomes["valid"] >= CASES // 4
    assert time.monotonic() - started < 60
