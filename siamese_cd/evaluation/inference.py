"""Change maps for scenes of any size: overlapping windows, blended without seams.

A scene is cut into `tile_size` windows that overlap by `overlap` pixels. Each window's
prediction is weighted by a ramp that is zero in the outer quarter of the overlap and rises
linearly to one over its middle half, then the weighted predictions are averaged. Pixels are
therefore never taken from near a window's edge, where zero padding distorts a convolutional
network, and neighbouring windows fade into each other instead of meeting at a seam. At the
scene's own edges the ramp is left out, so every pixel has weight.

Memory is the window batch plus the output: the scene's inputs are read one window at a time
from a reader (`ArrayScene` for arrays in memory; files are read window by window where their
format allows it). Windows keep the pixels' stored type (uint8, uint16, float): the model's
preprocessing layer scales them, as it did in training.

Example:
    >>> from siamese_cd import SiameseChangeModel
    >>> model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    >>> t1 = np.zeros((40, 48, 3), np.uint8)
    >>> t2 = np.full((40, 48, 3), 200, np.uint8)
    >>> probability = predict_scene(model, t1, t2, tile_size=32, overlap=16)
    >>> probability.shape, probability.dtype
    ((40, 48), dtype('float32'))
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from siamese_cd.atomic import atomic_path
from siamese_cd.data.layouts.pairing import pair_by_stem
from siamese_cd.data.readers.decoding import image_size, read_image, uses_rasterio
from siamese_cd.data.readers.georeference import check_same_grid
from siamese_cd.data.sampling.windows import windows
from siamese_cd.errors import ConfigError, ImageReadError
from siamese_cd.evaluation.tta import with_tta
from siamese_cd.hints import option_hint
from siamese_cd.models.loading import load_change_model  # noqa: F401  (the loader of every path)
from siamese_cd.models.losses import change_probability
from siamese_cd.models.preprocessing import check_served_pixels

# Rows handled at a time when finishing a scene-sized map, so temporaries stay small.
_ROWS = 256
_GDAL_CACHE_MB = 16


class Scene(Protocol):
    """A source of image windows: `shape` is (H, W, C), `dtype` the stored pixel type;
    `read` returns a window's pixels as stored."""

    shape: tuple[int, int, int]
    dtype: np.dtype

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray: ...


class ArrayScene:
    """A scene held as an (H, W, C) array; windows are views of it, pixels as they are."""

    def __init__(self, array: np.ndarray, name: str = "array"):
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise ImageReadError(f"{name}: expected an (H, W, C) image, got shape {array.shape}")
        self.array = array
        self.name = name
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = array.dtype

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        return self.array[top : top + height, left : left + width]


class FileScene:
    """An image file read window by window where its format allows (GeoTIFF via rasterio);
    other formats are decoded once, whole. Pixels are returned as stored.

    Args:
        path: the image file.
        bands: band numbers to read, counted from 1 (GDAL order); None reads them all, as
            `read_image` does (a PNG's alpha dropped, grayscale repeated to RGB; every band
            of a GeoTIFF kept).
    """

    def __init__(self, path: str | Path, bands: Sequence[int] | None = None):
        self.path = Path(path)
        self.name = str(self.path)
        self.bands = bands
        self.profile = None
        if uses_rasterio(self.path):
            self._array = None
            probe = read_image(self.path, bands=bands, window=(0, 0, 1, 1))
            self.shape = (*image_size(self.path), probe.shape[-1])
            self.dtype = probe.dtype
            self.profile = geo_profile(self.path)
        else:
            self._array = read_image(self.path, bands=bands)
            self.shape = tuple(int(s) for s in self._array.shape)
            self.dtype = self._array.dtype

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        if self._array is not None:
            return self._array[top : top + height, left : left + width]
        import rasterio

        # GDAL's block cache defaults to 5% of RAM and would fill with the whole scene.
        with rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB):
            return read_image(self.path, bands=self.bands, window=(top, left, height, width))


def geo_profile(path: Path) -> dict | None:
    """CRS, transform and nodata of a georeferenced raster; None if it has no CRS."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as source:
            if source.crs is None:
                return None
            return {"crs": source.crs, "transform": source.transform, "nodata": source.nodata}


def check_scenes(scene1, scene2, model=None) -> None:
    """Raise a clear error if two dates cannot be compared, or do not fit the model.

    Raises:
        ImageReadError: if the dates differ in size, bands or pixel type, or do not fit the
            model.
        GeoreferenceError: if two image files lie on different grids (CRS or transform;
            `siamese_cd.data.readers.georeference.grid_mismatch`).
    """
    name1, name2 = getattr(scene1, "name", "t1"), getattr(scene2, "name", "t2")
    if scene1.shape[:2] != scene2.shape[:2]:
        raise ImageReadError(
            f"t1 {name1} {scene1.shape[:2]} and t2 {name2} {scene2.shape[:2]} differ in size"
        )
    if scene1.shape[2] != scene2.shape[2]:
        raise ImageReadError(
            f"t1 {name1} has {scene1.shape[2]} band(s) and t2 {name2} has {scene2.shape[2]}"
        )
    dtype1, dtype2 = getattr(scene1, "dtype", None), getattr(scene2, "dtype", None)
    if dtype1 is not None and dtype2 is not None and np.dtype(dtype1) != np.dtype(dtype2):
        raise ImageReadError(
            f"t1 {name1} holds {np.dtype(dtype1)} pixels and t2 {name2} {np.dtype(dtype2)}; "
            "the model scales both dates alike, so give both in one pixel type"
        )
    # Now, not from inside the model's first call: the warning then precedes the progress bar.
    check_served_pixels(model, dtype1)
    # An exported model (`siamese_cd.evaluation.runtimes`) takes one pixel type only.
    served_type = getattr(model, "pixel_type_problem", None)
    problem = None if served_type is None or dtype1 is None else served_type(dtype1)
    if problem is not None:
        raise ImageReadError(f"{name1}: {problem}")
    expected = getattr(model, "in_channels", None)
    if expected is not None and scene1.shape[2] != expected:
        raise ImageReadError(
            f"{name1}: {scene1.shape[2]} band(s), but the model takes {expected}; "
            f"choose bands with {option_hint('bands=', '--bands')}"
        )
    # The one georeferencing rule of every path (training, evaluate, check, predict).
    path1, path2 = getattr(scene1, "path", None), getattr(scene2, "path", None)
    if path1 is not None and path2 is not None:
        check_same_grid(path1, path2)


def ramp(length: int, overlap: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """1-D blending weights of a window: 0 over the outer quarter of the overlap, then linear
    to 1 over its middle half, on each side that meets another window."""
    weights = np.ones(length, np.float32)
    if overlap <= 0:
        return weights
    distance = np.arange(length, dtype=np.float32) + 0.5  # from the window's start
    rising = np.clip((distance - overlap / 4) / (overlap / 2), 0.0, 1.0)
    if fade_start:
        weights = np.minimum(weights, rising)
    if fade_end:
        weights = np.minimum(weights, rising[::-1])
    return weights


def _weight_sums(boxes, height: int, width: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row and per-column sums of the windows' blending weights.

    Weights are separable, so their per-pixel sum is an outer product of these two 1-D sums
    and no scene-sized weight array is needed.
    """
    row_weights = np.zeros(height, np.float32)
    col_weights = np.zeros(width, np.float32)
    h, w = boxes[0][2], boxes[0][3]
    for top in sorted({b[0] for b in boxes}):
        row_weights[top : top + h] += ramp(h, overlap, top > 0, top + h < height)
    for left in sorted({b[1] for b in boxes}):
        col_weights[left : left + w] += ramp(w, overlap, left > 0, left + w < width)
    return row_weights, col_weights


def _window_predictions(model, scene1, scene2, boxes, batch_size: int, progress: bool):
    """Yield each window box with the model's change probability there, batch by batch."""
    bar = tqdm(total=len(boxes), desc="Predicting windows", unit="window", disable=not progress)
    for start in range(0, len(boxes), batch_size):
        batch = boxes[start : start + batch_size]
        # The last batch is padded by repeating a window: one input shape means one traced
        # graph, and no extra memory for a second one.
        padded = batch + batch[-1:] * (min(batch_size, len(boxes)) - len(batch))
        # Stored pixel types (uint8, uint16, ...): the model's preprocessing scales them.
        x1 = np.stack([scene1.read(*box) for box in padded])
        x2 = np.stack([scene2.read(*box) for box in padded])
        scores = np.asarray(model.predict_on_batch((x1, x2)))
        yield from zip(batch, change_probability(scores)[..., 0])
        bar.update(len(batch))
    bar.close()


def predict_scene(
    model,
    t1,
    t2,
    tile_size: int = 256,
    overlap: int = 64,
    batch_size: int = 8,
    progress: bool = False,
    tta: bool = False,
) -> np.ndarray:
    """Change probability of a whole scene, predicted window by window.

    Args:
        model: a change model taking ``(t1, t2)`` batches, e.g. `SiameseChangeModel`, or an
            exported one (`siamese_cd.evaluation.runtimes.open_change_model`).
        t1: the first date, an (H, W, C) array of raw pixels or a `Scene`.
        t2: the second date, of the same size.
        tile_size: window side in pixels.
        overlap: pixels shared by neighbouring windows; must be less than `tile_size`. Results
            equal whole-image prediction when ``tile_size - overlap`` is a multiple of
            ``2**depth`` and a quarter of the overlap exceeds the network's border effects.
        batch_size: windows per model call; with the tile size, this bounds memory.
        progress: show a progress bar over windows.
        tta: average the probabilities of the 8 flips and rotations of each window
            (`siamese_cd.evaluation.tta`); 8 times the model calls.

    Returns:
        (H, W) float32 change probabilities.

    Raises:
        ConfigError: for a bad tile size or overlap.
        ImageReadError: if the dates differ in size or bands.

    Windows are fed to the model in the scenes' stored pixel type (e.g. uint8 or uint16
    batches); the model's preprocessing layer scales them. See the module docstring for an
    example.
    """
    if tile_size < 1 or not 0 <= overlap < tile_size:
        raise ConfigError(
            f"need tile_size >= 1 and 0 <= overlap < tile_size, got {tile_size} and {overlap}"
        )
    scene1 = t1 if hasattr(t1, "read") else ArrayScene(np.asarray(t1), "t1")
    scene2 = t2 if hasattr(t2, "read") else ArrayScene(np.asarray(t2), "t2")
    check_scenes(scene1, scene2, model)
    model = with_tta(model, tta)
    height, width, _ = scene1.shape
    total = np.zeros((height, width), np.float32)
    boxes = list(windows(height, width, tile_size, overlap))
    row_weights, col_weights = _weight_sums(boxes, height, width, overlap)

    for (top, left, h, w), probability in _window_predictions(
        model, scene1, scene2, boxes, batch_size, progress
    ):
        weight = np.outer(
            ramp(h, overlap, top > 0, top + h < height),
            ramp(w, overlap, left > 0, left + w < width),
        )
        total[top : top + h, left : left + w] += probability * weight
    for top in range(0, height, _ROWS):  # in bands of rows: no second scene-sized array
        total[top : top + _ROWS] /= np.outer(row_weights[top : top + _ROWS], col_weights)
    return total


OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".npy")


def check_map_path(path: str | Path, probabilities: bool = False) -> Path:
    """`path` as a change map's file, checked before anything is predicted.

    Raises:
        ConfigError: for an unknown suffix, or probabilities asked for in a PNG.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"{path}: write change maps as {', '.join(OUTPUT_SUFFIXES)}")
    if probabilities and suffix == ".png":
        raise ConfigError(f"{path}: probabilities are floats; write them as .tif or .npy")
    return path


def map_suffix(t1: str | Path, probabilities: bool = False) -> str:
    """The suffix of T1's change map when only a folder is given: ``.tif`` for a GeoTIFF T1
    (which keeps its georeference) or probabilities (floats), else ``.png``."""
    return ".tif" if uses_rasterio(t1) or probabilities else ".png"


def map_path(
    out: str | Path, t1: str | Path, probabilities: bool = False, t2: str | Path | None = None
) -> Path:
    """Where the change map of T1 goes: `out`, or ``out/<T1 stem><map_suffix>`` when `out`
    is an existing folder or ends with a path separator; checked by `check_map_path`.

    Raises:
        ConfigError: for a bad suffix (`check_map_path`), or a path that is T1 or T2 itself
            (e.g. T1's own folder given as the output), which would be overwritten.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> map_path(folder, "a/scene_2019.tif").name, map_path(folder, "b/x.png").name
        ('scene_2019.tif', 'x.png')
    """
    folder = Path(out).is_dir() or str(out).endswith(("/", os.sep))
    path = Path(out) / f"{Path(t1).stem}{map_suffix(t1, probabilities)}" if folder else Path(out)
    for name, source in (("T1", t1), ("T2", t2)):
        if source is not None and _same_file(path, source):
            raise ConfigError(
                f"{path}: that is the input {name}, which the change map would overwrite; "
                "write it to another file or folder"
            )
    return check_map_path(path, probabilities)


def check_maps_folder(out_dir: str | Path, t1_dir: str | Path, t2_dir: str | Path) -> Path:
    """`out_dir` as the folder of the change maps of two folders, checked before predicting.

    Raises:
        ConfigError: if `out_dir` is a file, or the T1 or T2 folder (whose images maps of the
            same names would replace).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: a file; the maps of two folders go into an output folder")
    for name, folder in (("T1", t1_dir), ("T2", t2_dir)):
        if _same_file(out_dir, folder):
            raise ConfigError(
                f"{out_dir}: that is the {name} folder, whose images the maps would replace; "
                "write them to another folder"
            )
    return out_dir


def _same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one existing file or folder."""
    return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)


def write_change_map(
    path: str | Path,
    probability: np.ndarray,
    threshold: float = 0.5,
    probabilities: bool = False,
    profile: dict | None = None,
) -> Path:
    """Write a change map: a 0/255 uint8 mask, or float32 probabilities.

    ``.png`` holds masks only; ``.tif`` holds either, with the CRS and transform of `profile`
    (T1's) when given; ``.npy`` holds either as a NumPy array. A mask declares no nodata value:
    both 0 and 255 are data, and T1's nodata (often 0) would hide every unchanged pixel.
    Probabilities keep T1's nodata only when it cannot be a probability (outside [0, 1]).

    Raises:
        ConfigError: for an unknown suffix, or probabilities asked for in a PNG.
    """
    path = check_map_path(path, probabilities)
    suffix = path.suffix.lower()
    if probabilities:
        data = probability.astype(np.float32, copy=False)
    else:
        data = np.empty(probability.shape, np.uint8)
        for top in range(0, data.shape[0], _ROWS):
            rows = slice(top, top + _ROWS)
            np.multiply(probability[rows] >= threshold, 255, out=data[rows], casting="unsafe")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        _write_map(temporary, suffix, data, probabilities, profile)
    return path


def _write_map(path: Path, suffix: str, data: np.ndarray, probabilities: bool, profile) -> None:
    if suffix == ".png":
        Image.fromarray(data).save(path, format="PNG")
    elif suffix == ".npy":
        with open(path, "wb") as handle:  # np.save(path) would add ".npy" to the name
            np.save(handle, data)
    else:
        import rasterio

        meta = {
            "driver": "GTiff",
            "height": data.shape[0],
            "width": data.shape[1],
            "count": 1,
            "dtype": data.dtype.name,
            "compress": "deflate",
        }
        if profile is not None:
            meta.update(crs=profile["crs"], transform=profile["transform"])
            nodata = profile.get("nodata")
            if probabilities and nodata is not None and not 0.0 <= nodata <= 1.0:
                meta["nodata"] = nodata
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path, "w", **meta) as sink:
                for top in range(0, data.shape[0], _ROWS):
                    rows = data[top : top + _ROWS]
                    window = rasterio.windows.Window(0, top, data.shape[1], rows.shape[0])
                    sink.write(rows, 1, window=window)


def predict_files(
    model,
    t1: str | Path,
    t2: str | Path,
    out: str | Path,
    tile_size: int = 256,
    overlap: int = 64,
    threshold: float | None = None,
    probabilities: bool = False,
    bands: Sequence[int] | None = None,
    batch_size: int = 8,
    progress: bool = False,
    tta: bool = False,
) -> Path:
    """Predict the change map of two image files and write it to `out`.

    `out` is the map's file; an existing folder (or a name ending with a path separator)
    receives ``<T1 stem>.png`` (``.tif`` for a GeoTIFF T1 or probabilities), see `map_path`.
    The output is checked before anything is predicted.

    The mask marks change where the probability reaches `threshold`; None takes the model's
    own (0.5, or the one chosen on validation data and saved with it).

    A GeoTIFF t1 passes its CRS and transform to a ``.tif`` output, and GeoTIFF inputs are
    read window by window, so memory is the window batch plus the output map.

    Raises:
        ImageReadError: if the dates differ in size, bands, CRS or transform, or do not fit
            the model.
        ConfigError: for a bad output suffix or tiling.
    """
    out = map_path(out, t1, probabilities, t2)
    scene1, scene2 = FileScene(t1, bands), FileScene(t2, bands)
    probability = predict_scene(
        model, scene1, scene2, tile_size, overlap, batch_size=batch_size, progress=progress, tta=tta
    )
    if threshold is None:
        threshold = getattr(model, "threshold", 0.5)
    return write_change_map(out, probability, threshold, probabilities, scene1.profile)


def predict_folders(
    model,
    t1_dir: str | Path,
    t2_dir: str | Path,
    out_dir: str | Path,
    suffix: str | None = None,
    progress: bool = True,
    on_missing: str = "error",
    **options,
) -> list[Path]:
    """Predict every pair of two folders, matched by file stem, into `out_dir`.

    Each map is named after its stem, with `suffix` (default: `map_suffix`, ``.tif`` for
    GeoTIFF inputs or probabilities, else ``.png``). `options` are those of `predict_files`.

    Args:
        on_missing: ``"error"`` (default) raises on a file without its counterpart;
            ``"skip"`` leaves it out with one warning naming it.

    Raises:
        PairingError: if a file has no counterpart of the same name (``on_missing="error"``).
        ConfigError: if `out_dir` is the T1 or T2 folder.
    """
    check_maps_folder(out_dir, t1_dir, t2_dir)
    pairs = pair_by_stem(t1_dir, t2_dir, on_missing=on_missing)
    written = []
    for pair in tqdm(pairs, desc="Predicting scenes", unit="scene", disable=not progress):
        ending = suffix or map_suffix(pair.t1, options.get("probabilities", False))
        written.append(
            predict_files(
                model, pair.t1, pair.t2, Path(out_dir) / f"{pair.stem}{ending}", **options
            )
        )
    return written
