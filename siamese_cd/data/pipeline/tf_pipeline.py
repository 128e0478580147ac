"""`PairedImageDataset.as_tf_dataset`: the dataset's samples as a `tf.data` pipeline.

This is the only data module that uses TensorFlow. Only file paths enter the graph (no 2 GB
protobuf limit), the scene list is shuffled rather than pixels, and PNG, JPEG and BMP files are
decoded by TensorFlow in a parallel map. Everything else is the dataset's `SampleSource`, called
through `tf.numpy_function`: other formats and the cache are read by `SampleSource.read_pair`,
tiles start where `SampleSource.tile_starts` says, and augmentation is `Augment.apply`. The two
steps done in-graph for speed, band handling and label binarisation of decoded files, are the
graph forms of `decoding.read_image` and `decoding.binarize_label`; the tests compare the
two paths value for value. Pixels stay raw, as stored.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from siamese_cd.data.pipeline.dataset import PairedImageDataset
    >>> split = Path(tempfile.mkdtemp())
    >>> for folder in ("time1", "time2", "label"):
    ...     (split / folder).mkdir()
    ...     Image.fromarray(np.full((32, 32), 255, np.uint8)).save(split / folder / "a.png")
    >>> (t1, t2), mask = next(iter(build(PairedImageDataset(split, tile_size=16))))
    >>> t1.shape, t1.dtype.name, float(mask.numpy().max())
    (TensorShape([4, 16, 16, 3]), 'uint8', 1.0)
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from siamese_cd.data.pipeline.source import SampleSource
from siamese_cd.data.readers.decoding import ALPHA_BAND_COUNTS, is_lossy, read_label_values

AUTOTUNE = tf.data.AUTOTUNE


def _decode_function(paths: list[str], dtype: tf.DType, channels: int = 0):
    """A TensorFlow decoder for files all of these formats, or None if TF cannot decode some.

    ``channels=3`` lets the decoder itself expand gray and drop alpha, as `read_image` does
    by default, which is cheaper than doing it afterwards; 0 keeps the file's bands.
    """
    suffixes = {os.path.splitext(path)[1].lower() for path in paths}
    if suffixes <= {".png"}:
        return lambda raw: tf.io.decode_png(raw, channels=channels, dtype=dtype)
    if suffixes <= {".jpg", ".jpeg"} and dtype == tf.uint8:
        # Pillow decodes JPEG with libjpeg's accurate integer DCT; match it.
        return lambda raw: tf.io.decode_jpeg(raw, channels=channels, dct_method="INTEGER_ACCURATE")
    if suffixes <= {".png", ".jpg", ".jpeg", ".bmp"}:
        return lambda raw: tf.io.decode_image(
            raw, channels=channels, dtype=dtype, expand_animations=False
        )
    return None


def _bands(image: tf.Tensor, data: SampleSource) -> tf.Tensor:
    """Band handling of `decoding.read_image`: selection, alpha dropped, gray expanded.

    Only PNG, JPEG and BMP files are decoded here (TIFFs are read by the `SampleSource`), so
    `decoding.drops_alpha` comes down to the band count.
    """
    if data.bands is not None:
        image = tf.gather(image, [b - 1 for b in data.bands], axis=-1)
    else:
        count = tf.shape(image)[-1]
        image = tf.cond(
            tf.reduce_any([tf.equal(count, n) for n in sorted(ALPHA_BAND_COUNTS)]),
            lambda: image[..., :-1],
            lambda: image,
        )
        if data.grayscale == "expand":
            image = tf.cond(
                tf.equal(tf.shape(image)[-1], 1),
                lambda: tf.tile(image, [1, 1, 3]),
                lambda: image,
            )
    return tf.ensure_shape(image, [None, None, data.channels])


def _checked_bytes(path: tf.Tensor, dtype: tf.DType | None) -> tf.Tensor:
    """The bytes of an image file, failing with its name if they cannot be a valid image.

    TensorFlow's decoders fail without naming the file ("Input is empty", "Invalid PNG
    data"), so the usual faults are caught first, as the NumPy path reports them: an empty
    file, an unknown format, a truncated PNG, and (for images, given their `dtype`) a PNG of
    another bit depth than the split's, which ``decode_png`` would convert silently. Damage
    deeper inside a file is named after the fact (`siamese_cd.data.readers.undecodable`).
    """
    raw = tf.io.read_file(path)
    head = tf.strings.substr(raw, 0, 8)
    png = tf.equal(tf.strings.substr(raw, 0, 4), b"\x89PNG")
    known = tf.reduce_any(
        [
            png,
            tf.equal(tf.strings.substr(raw, 0, 2), b"\xff\xd8"),
            tf.equal(tf.strings.substr(raw, 0, 2), b"BM"),
        ]
    )
    size = tf.strings.length(raw)
    checks = [
        tf.debugging.Assert(size > 0, [path, ": cannot decode image (the file is empty)"]),
        tf.debugging.Assert(
            known, [path, ": cannot decode image (not a PNG, JPEG or BMP file; starts", head, ")"]
        ),
    ]
    # A complete PNG ends with its IEND chunk (length, "IEND", CRC); a truncated one does not.
    ends = tf.equal(tf.strings.substr(raw, tf.maximum(size - 8, 0), 4), b"IEND")
    checks.append(
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(png), ends),
            [path, ": cannot decode image (truncated PNG: no IEND chunk at the end)"],
        )
    )
    if dtype is not None:
        # Clamped: substr fails on a position past the end, and it may run before the asserts.
        byte = tf.strings.substr(raw, tf.minimum(24, size), 1)
        depth = tf.strings.unicode_decode(byte, "ISO-8859-1")
        depth = tf.reduce_max(tf.concat([depth, [0]], 0))
        wanted = 16 if dtype == tf.uint16 else 8
        same = tf.equal(depth, wanted) if wanted == 16 else tf.less_equal(depth, 8)
        checks.append(
            tf.debugging.Assert(
                tf.logical_or(tf.logical_not(png), same),
                [path, ": a", depth, f"-bit PNG, but this split's images hold {dtype.name} "
                 "pixels; store every image of a split with one bit depth"],
            )
        )  # fmt: skip
    with tf.control_dependencies(checks):
        return tf.identity(raw)


def _label(values: tf.Tensor, lossy: tf.Tensor, threshold: int) -> tf.Tensor:
    """`decoding.binarize_label` on a decoded label of 1 to 4 bands, as (H, W) uint8."""
    count = tf.shape(values)[-1]
    values = tf.cond(
        count >= 3,
        lambda: tf.reduce_max(values[..., :3], axis=-1),
        lambda: values[..., 0],
    )
    zero_one = tf.logical_and(tf.logical_not(lossy), tf.reduce_max(values) <= 1)
    cut = tf.where(zero_one, tf.constant(1, values.dtype), tf.cast(threshold, values.dtype))
    return tf.cast(values >= cut, tf.uint8)


def _cut_tiles(image: tf.Tensor, tops, lefts, tile) -> tf.Tensor:
    """All tiles of one (H, W, C) image, as (tiles, th, tw, C), row by row."""
    rows = tops[:, None] + tf.range(tile[0])[None, :]
    cols = lefts[:, None] + tf.range(tile[1])[None, :]
    strips = tf.gather(image, rows, axis=0)  # (ny, th, W, C)
    blocks = tf.gather(strips, cols, axis=2)  # (ny, th, nx, tw, C)
    blocks = tf.transpose(blocks, [0, 2, 1, 3, 4])
    return tf.reshape(blocks, [-1, tile[0], tile[1], tf.shape(image)[-1]])


def _decoders(source: SampleSource, dtype: tf.DType) -> tuple[dict, dict] | None:
    """Path constants and TensorFlow decoders per role, or None if TF cannot decode them all."""
    roles = ("t1", "t2", "label") if source.labelled else ("t1", "t2")
    default_bands = source.bands is None and source.grayscale == "expand"
    constants, decoders = {}, {}
    for role in roles:
        paths = source.pairs.paths(role)
        if role == "label":
            constants["lossy"] = tf.constant([is_lossy(path) for path in paths])
            # Labels decode in their stored type, so values are thresholded unscaled.
            label_dtype = tf.as_dtype(read_label_values(paths[0]).dtype)
            decoders[role] = _decode_function(paths, label_dtype)
        else:
            decoders[role] = _decode_function(paths, dtype, 3 if default_bands else 0)
        if decoders[role] is None:
            return None
        constants[role] = tf.constant(paths)
    return constants, decoders


def _scene_reader(source: SampleSource, dtype: tf.DType, scenes):
    """``index -> (t1, t2, mask)`` tensors of a whole scene, mask (H, W) uint8 (0 unlabelled).

    Files TensorFlow cannot decode (GeoTIFFs) are read by the source in `tf.numpy_function`,
    where an error loses its type, so the georeferencing of `scenes` is checked here, once,
    from the TIFF headers (`SampleSource.check_grids`).
    """
    channels = source.channels
    image_shape = [None, None, channels]
    files = source.cache is None and source.files_are_samples
    tables = _decoders(source, dtype) if files else None
    if tables is None:
        if source.cache is None:
            source.check_grids(scenes)

        def read_numpy(i):
            t1, t2, mask = source.read_pair(int(i))
            return t1, t2, mask if mask is not None else np.zeros(t1.shape[:2], np.uint8)

        def read(index):
            t1, t2, mask = tf.numpy_function(
                read_numpy, [index], [dtype, dtype, tf.uint8], stateful=False
            )
            return (
                tf.ensure_shape(t1, image_shape),
                tf.ensure_shape(t2, image_shape),
                tf.ensure_shape(mask, [None, None]),
            )

        return read
    constants, decoders = tables
    default_bands = source.bands is None and source.grayscale == "expand"

    def decode(element, role):
        raw = _checked_bytes(element[role], dtype if role != "label" else None)
        image = decoders[role](raw)
        return tf.ensure_shape(image, [None, None, 3]) if default_bands else _bands(image, source)

    def read(index):
        element = {name: tf.gather(column, index) for name, column in constants.items()}
        t1, t2 = decode(element, "t1"), decode(element, "t2")
        if not source.labelled:
            return t1, t2, tf.zeros(tf.shape(t1)[:2], tf.uint8)
        label = decoders["label"](_checked_bytes(element["label"], None))
        mask = _label(label, element["lossy"], source.label_threshold)
        sizes = [tf.shape(t1)[:2], tf.shape(t2)[:2], tf.shape(mask)]
        same = tf.reduce_all([tf.reduce_all(tf.equal(sizes[0], s)) for s in sizes[1:]])
        message = ["sizes differ:", element["t1"], tf.shape(t1), element["t2"], tf.shape(t2)]
        message += [element["label"], tf.shape(mask)]
        with tf.control_dependencies([tf.debugging.Assert(same, message, summarize=8)]):
            return tf.identity(t1), t2, mask

    return read


def _changed_corner(source: SampleSource, index, seed):
    """Top and left of `SampleSource.changed_window` (crops with `min_change`), seeded."""

    def corner(index, seed):
        rng = np.random.default_rng([int(seed[0]) & 0x7FFFFFFFFFFFFFFF, int(seed[1])])
        top, left, _, _ = source.changed_window(int(index), rng)
        return np.int32(top), np.int32(left)

    top, left = tf.numpy_function(corner, [index, seed], [tf.int32, tf.int32])
    return tf.ensure_shape(top, []), tf.ensure_shape(left, [])


def _random_crop(source: SampleSource, t1, t2, mask, seed, index=None):
    """A uniformly placed `crop_size` window of the three, drawn from a stateless seed (or a
    window with `min_change` changed pixels, drawn by the source)."""
    height, width = tf.shape(t1)[0], tf.shape(t1)[1]
    ch, cw = source.crop_size
    if source.min_change > 0:
        top, left = _changed_corner(source, index, seed)
        window = (slice(top, top + ch), slice(left, left + cw))
        return t1[window], t2[window], mask[window]
    fits = tf.logical_and(height >= ch, width >= cw)
    check = tf.debugging.Assert(fits, ["a scene is smaller than crop_size", tf.shape(t1)[:2]])
    with tf.control_dependencies([check]):
        top = tf.random.stateless_uniform(
            [], seed, minval=0, maxval=height - ch + 1, dtype=tf.int32
        )
        left = tf.random.stateless_uniform(
            [], seed + [0, 1], minval=0, maxval=width - cw + 1, dtype=tf.int32
        )
    window = (slice(top, top + ch), slice(left, left + cw))
    return t1[window], t2[window], mask[window]


def _tiles_of(source: SampleSource):
    """A `flat_map` function: one scene's ``(t1, t2, mask[, seed])`` to a dataset of its tiles."""
    tile = source.tiles.tile

    def tiles_of(t1, t2, mask, *seed):
        tops, lefts = tf.numpy_function(
            source.tile_starts, [tf.shape(t1)[0], tf.shape(t1)[1]], [tf.int32, tf.int32]
        )
        tops, lefts = tf.ensure_shape(tops, [None]), tf.ensure_shape(lefts, [None])
        cut1 = _cut_tiles(t1, tops, lefts, tile)
        cut2 = _cut_tiles(t2, tops, lefts, tile)
        cutm = _cut_tiles(mask[..., None], tops, lefts, tile)[..., 0]
        if not seed:
            return tf.data.Dataset.from_tensor_slices((cut1, cut2, cutm))
        number = tf.shape(cut1)[0]
        numbers = tf.range(number, dtype=tf.int64)
        tile_seeds = tf.stack([tf.fill([number], seed[0][0]), numbers], axis=1)
        return tf.data.Dataset.from_tensor_slices((cut1, cut2, cutm, tile_seeds))

    return tiles_of


def _augmenter(data, pixels: tf.DType):
    """A map function applying `data.augment.apply` to one sample, seeded per sample."""
    shape = [None, None, data.channels]

    def augment_numpy(t1, t2, mask, seed):
        rng = np.random.default_rng([int(seed[0]) & 0x7FFFFFFFFFFFFFFF, int(seed[1])])
        t1, t2, mask = data.augment.apply(t1, t2, mask, rng)
        return t1.astype(pixels.as_numpy_dtype, copy=False), t2.astype(t1.dtype), mask

    def augment(t1, t2, mask, seed):
        out1, out2, out_mask = tf.numpy_function(
            augment_numpy, [t1, t2, mask, seed], [pixels, pixels, tf.uint8]
        )
        return (
            tf.ensure_shape(out1, shape),
            tf.ensure_shape(out2, shape),
            tf.ensure_shape(out_mask, [None, None]),
        )

    return augment


def _cached_batches(data, scenes: tf.data.Dataset, dtype: tf.DType, deterministic: bool):
    """Whole same-size scenes from the cache, read a batch per call straight into arrays."""
    cache = data.cache
    height, width = cache.uniform_size([0])
    shape = [None, height, width, data.channels]

    def read_batch(indices):
        t1, t2, mask = cache.read_batch(indices)
        return t1, t2, mask if mask is not None else np.zeros((0, 0, 0), np.uint8)

    def load_batch(indices):
        t1, t2, mask = tf.numpy_function(
            read_batch, [indices], [dtype, dtype, tf.uint8], stateful=False
        )
        return tf.ensure_shape(t1, shape), tf.ensure_shape(t2, shape), mask

    return scenes.batch(data.batch_size).map(
        load_batch, num_parallel_calls=AUTOTUNE, deterministic=deterministic
    )


def build(
    data, prefetch: bool = True, deterministic: bool | None = None, scenes=None
) -> tf.data.Dataset:
    """Build the pipeline of a `PairedImageDataset`; see `PairedImageDataset.as_tf_dataset`.

    `scenes`, scene numbers in order, reads only those scenes (a worker's share; shuffled
    when `data.shuffle` is on); None reads every scene.
    """
    if deterministic is None:
        # A shuffled order is random anyway; letting finished samples overtake slow ones is faster.
        deterministic = not data.shuffle
    source: SampleSource = data.source
    dtype = tf.as_dtype(source.dtype)
    labelled = source.labelled
    chosen = range(len(source.pairs)) if scenes is None else [int(i) for i in scenes]
    count = len(chosen)

    def pack(t1, t2, mask, *seed):
        if not labelled:
            return ((t1, t2),)
        return (t1, t2), tf.cast(mask[..., None], tf.float32)

    # Only scene numbers are shuffled; paths are looked up in constant tensors.
    per_scene = source.samples_per_scene
    # Sample k is a crop of scene chosen[k // samples_per_scene].
    scenes = tf.data.Dataset.from_tensor_slices(np.repeat(np.asarray(chosen, np.int64), per_scene))
    if data.shuffle:
        scenes = scenes.shuffle(count * per_scene, seed=data.seed, reshuffle_each_iteration=True)
    whole = source.tiles is None and source.crop_size is None and data.augment is None
    if source.cache is not None and whole and source.cache.uniform_size(chosen):
        batches = _cached_batches(data, scenes, dtype, deterministic)
        batches = batches.map(pack, num_parallel_calls=AUTOTUNE)
        return batches.prefetch(AUTOTUNE) if prefetch else batches

    randomised = source.crop_size is not None or data.augment is not None
    if randomised:
        # One seed per scene and epoch; a sample's seed is (scene seed, tile number).
        seeds = tf.data.Dataset.random(seed=data.seed, rerandomize_each_iteration=True)
        scenes = tf.data.Dataset.zip((scenes, seeds.map(lambda s: tf.stack([s, s * 0]))))
    read = _scene_reader(source, dtype, chosen)

    def load_scene(index, seed=None):
        t1, t2, mask = read(index)
        if source.crop_size is not None:
            t1, t2, mask = _random_crop(source, t1, t2, mask, seed, index)
        return (t1, t2, mask) if seed is None else (t1, t2, mask, seed)

    samples = scenes.map(load_scene, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if source.tiles is not None:
        samples = samples.flat_map(_tiles_of(source))
    if data.augment is not None:
        augment = _augmenter(data, tf.as_dtype(data.pixel_dtype))
        samples = samples.map(augment, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    batches = samples.batch(data.batch_size).map(pack, num_parallel_calls=AUTOTUNE)
    return batches.prefetch(AUTOTUNE) if prefetch else batches
