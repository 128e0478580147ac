"""`PairedImageDataset.as_tf_dataset`: the dataset's samples as a `tf.data` pipeline.

This is the only data module that uses TensorFlow. Only file paths enter the graph (no 2 GB
protobuf limit), the path list is shuffled rather than pixels, and PNG, JPEG and BMP files are
decoded by TensorFlow in a parallel map. Every step mirrors the NumPy path in `dataset.py`:
band handling as `decoding.read_image`, label binarisation as `decoding.binarize_label`, tiles as
`windows.tile_starts`, normalisation as `PairedImageDataset._fill`; the tests compare the two.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from siamese_cd.data.decoding import (
    is_lossy,
    read_image,
    read_label,
    read_label_values,
)

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


def _bands(image: tf.Tensor, data) -> tf.Tensor:
    """Band handling of `decoding.read_image`: selection, alpha dropped, gray expanded."""
    if data.bands is not None:
        image = tf.gather(image, [b - 1 for b in data.bands], axis=-1)
    else:
        count = tf.shape(image)[-1]
        image = tf.cond(
            tf.logical_or(tf.equal(count, 2), tf.equal(count, 4)),
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


def _tile_windows(height, width, tile, stride):
    """Tops and lefts of the tiles of a scene, as `windows.tile_starts` gives them."""

    def starts(length, size, step):
        count = (length - size + step - 1) // step + 1
        return tf.minimum(tf.range(count) * step, length - size)

    return starts(height, tile[0], stride[0]), starts(width, tile[1], stride[1])


def _cut_tiles(image: tf.Tensor, tops, lefts, tile) -> tf.Tensor:
    """All tiles of one (H, W, C) image, as (tiles, th, tw, C), row by row."""
    rows = tops[:, None] + tf.range(tile[0])[None, :]
    cols = lefts[:, None] + tf.range(tile[1])[None, :]
    strips = tf.gather(image, rows, axis=0)  # (ny, th, W, C)
    blocks = tf.gather(strips, cols, axis=2)  # (ny, th, nx, tw, C)
    blocks = tf.transpose(blocks, [0, 2, 1, 3, 4])
    return tf.reshape(blocks, [-1, tile[0], tile[1], tf.shape(image)[-1]])


def build(data, prefetch: bool = True, deterministic: bool | None = None) -> tf.data.Dataset:
    """Build the pipeline of a `PairedImageDataset`; see `PairedImageDataset.as_tf_dataset`."""
    if deterministic is None:
        # A shuffled order is random anyway; letting finished samples overtake slow ones is faster.
        deterministic = not data.shuffle
    channels = data.channels
    dtype = tf.as_dtype(data._sample_dtype())
    labelled = data.labelled
    pairs = data.pairs
    count = len(pairs)

    # Only scene numbers are shuffled; paths are looked up in constant tensors (not needed
    # with a cache, which is read by scene number).
    roles = ("t1", "t2", "label") if labelled else ("t1", "t2")
    constants, decoders = {}, {}
    default_bands = data.bands is None and data.grayscale == "expand"
    label_dtype = tf.uint8
    if data.cache is None:
        if labelled:
            # Decode labels in their stored type, so values are thresholded unscaled.
            label_dtype = tf.as_dtype(read_label_values(pairs[0].label).dtype)
        for role in roles:
            paths = pairs.paths(role)
            constants[role] = tf.constant(paths)
            if role == "label":
                constants["lossy"] = tf.constant([is_lossy(path) for path in paths])
                decoders[role] = _decode_function(paths, label_dtype)
            else:
                decoders[role] = _decode_function(paths, dtype, 3 if default_bands else 0)
        del paths  # the Python strings; the graph keeps its own copy
    scenes = tf.data.Dataset.range(count)
    if data.shuffle:
        scenes = scenes.shuffle(count, seed=data.seed, reshuffle_each_iteration=True)
    if data.raw_pixels:
        normalize = None  # integer pixels, as the fit path gives them
    elif data.augment is None:
        offset, divisor = data._normalizer(data._sample_dtype(), pairs[0].t1)
        unit = data.normalization == "unit"
        offset, divisor = tf.constant(offset), tf.constant(divisor)

        def normalize(images):
            # Whole batches at once: one cast and one division per batch, not per sample.
            images = tf.cast(images, tf.float32)
            return images / divisor if unit else (images - offset) / divisor

    else:
        normalize = None  # the NumPy augmentation normalises too
    pixels = tf.as_dtype(data.pixel_dtype)

    def pack(t1, t2, mask, *seed):
        if normalize is not None:
            t1, t2 = normalize(t1), normalize(t2)
        if not labelled:
            return ((t1, t2),)
        return (t1, t2), tf.cast(mask[..., None], tf.float32)

    if data._whole_cached_scenes() and data.cache.uniform_size(np.arange(count)) is not None:
        # Whole same-size scenes from the cache: read each batch in one call, straight into
        # batch arrays, instead of scene by scene.
        height, width = data.cache.uniform_size([0])

        def read_batch(indices):
            t1, t2, mask = data.cache.read_batch(indices)
            return t1, t2, mask if mask is not None else np.zeros((0, 0, 0), np.uint8)

        def load_batch(indices):
            t1, t2, mask = tf.numpy_function(
                read_batch, [indices], [dtype, dtype, tf.uint8], stateful=False
            )
            t1 = tf.ensure_shape(t1, [None, height, width, channels])
            t2 = tf.ensure_shape(t2, [None, height, width, channels])
            return t1, t2, mask

        raw = scenes.batch(data.batch_size).map(
            load_batch, num_parallel_calls=AUTOTUNE, deterministic=deterministic
        )
        batches = raw.map(pack, num_parallel_calls=AUTOTUNE)
        return batches.prefetch(AUTOTUNE) if prefetch else batches

    if data.crop_size is not None or data.augment is not None:
        # One seed per scene and epoch; a sample's seed is (scene seed, tile number).
        seeds = tf.data.Dataset.random(seed=data.seed, rerandomize_each_iteration=True)
        scenes = tf.data.Dataset.zip((scenes, seeds.map(lambda s: tf.stack([s, s * 0]))))

    def read_image_numpy(path):
        return read_image(path.decode(), bands=data.bands, grayscale=data.grayscale)

    def load_role(element, role):
        path = element[role]
        decode = decoders[role]
        if decode is None:
            image = tf.numpy_function(read_image_numpy, [path], dtype, stateful=False)
            return tf.ensure_shape(image, [None, None, channels])
        image = decode(tf.io.read_file(path))
        return tf.ensure_shape(image, [None, None, 3]) if default_bands else _bands(image, data)

    def load_label(element):
        path = element["label"]
        decode = decoders["label"]
        if decode is None:

            def numpy_label(p):
                return read_label(p.decode(), data.label_threshold)

            mask = tf.numpy_function(numpy_label, [path], tf.uint8, stateful=False)
            return tf.ensure_shape(mask, [None, None])
        return _label(decode(tf.io.read_file(path)), element["lossy"], data.label_threshold)

    def load_scene(index, seed=None):
        element = {name: tf.gather(column, index) for name, column in constants.items()}
        element["index"] = index
        if data.cache is not None:

            def from_cache(i):
                t1, t2, mask = data.cache.read(int(i))
                return t1, t2, mask if mask is not None else np.zeros((0, 0), np.uint8)

            t1, t2, mask = tf.numpy_function(
                from_cache, [element["index"]], [dtype, dtype, tf.uint8], stateful=False
            )
            t1 = tf.ensure_shape(t1, [None, None, channels])
            t2 = tf.ensure_shape(t2, [None, None, channels])
            mask = tf.ensure_shape(mask, [None, None])
        else:
            t1, t2 = load_role(element, "t1"), load_role(element, "t2")
            mask = load_label(element) if labelled else tf.zeros([0, 0], tf.uint8)
            sizes = [tf.shape(t1)[:2], tf.shape(t2)[:2]] + ([tf.shape(mask)] if labelled else [])
            same = tf.reduce_all([tf.reduce_all(tf.equal(sizes[0], s)) for s in sizes[1:]])
            message = ["sizes differ:", element["t1"], tf.shape(t1), element["t2"], tf.shape(t2)]
            if labelled:
                message += [element["label"], tf.shape(mask)]
            with tf.control_dependencies([tf.debugging.Assert(same, message, summarize=8)]):
                t1 = tf.identity(t1)
        if not labelled:
            mask = tf.zeros(tf.shape(t1)[:2], tf.uint8)
        if data.crop_size is not None:
            height, width = tf.shape(t1)[0], tf.shape(t1)[1]
            ch, cw = data.crop_size
            fits = tf.logical_and(height >= ch, width >= cw)
            check = tf.debugging.Assert(
                fits, [element.get("t1", index), "is smaller than crop_size", tf.shape(t1)[:2]]
            )
            with tf.control_dependencies([check]):
                top = tf.random.stateless_uniform(
                    [], seed, minval=0, maxval=height - ch + 1, dtype=tf.int32
                )
                left = tf.random.stateless_uniform(
                    [], seed + [0, 1], minval=0, maxval=width - cw + 1, dtype=tf.int32
                )
            t1 = t1[top : top + ch, left : left + cw]
            t2 = t2[top : top + ch, left : left + cw]
            mask = mask[top : top + ch, left : left + cw]
        return (t1, t2, mask) if seed is None else (t1, t2, mask, seed)

    samples = scenes.map(load_scene, num_parallel_calls=AUTOTUNE, deterministic=deterministic)

    if data.tiles is not None:
        tile, stride = data.tiles.tile, data.tiles.stride

        def tiles_of(t1, t2, mask, *seed):
            tops, lefts = _tile_windows(tf.shape(t1)[0], tf.shape(t1)[1], tile, stride)
            cut1 = _cut_tiles(t1, tops, lefts, tile)
            cut2 = _cut_tiles(t2, tops, lefts, tile)
            cutm = _cut_tiles(mask[..., None], tops, lefts, tile)[..., 0]
            if not seed:
                return tf.data.Dataset.from_tensor_slices((cut1, cut2, cutm))
            number = tf.shape(cut1)[0]
            numbers = tf.range(number, dtype=tf.int64)
            tile_seeds = tf.stack([tf.fill([number], seed[0][0]), numbers], axis=1)
            return tf.data.Dataset.from_tensor_slices((cut1, cut2, cutm, tile_seeds))

        samples = samples.flat_map(tiles_of)

    if data.augment is not None:

        def augment(t1, t2, mask, seed):
            out1, out2, out_mask = tf.numpy_function(
                data._augment_numpy, [t1, t2, mask, seed], [pixels, pixels, tf.uint8]
            )
            shape = [None, None, channels]
            return (
                tf.ensure_shape(out1, shape),
                tf.ensure_shape(out2, shape),
                tf.ensure_shape(out_mask, [None, None]),
            )

        samples = samples.map(augment, num_parallel_calls=AUTOTUNE, deterministic=deterministic)

    batches = samples.batch(data.batch_size).map(pack, num_parallel_calls=AUTOTUNE)
    return batches.prefetch(AUTOTUNE) if prefetch else batches
