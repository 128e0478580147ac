"""Naming the file behind a TensorFlow decoding failure.

TensorFlow's image decoders fail without naming the file ("Invalid PNG data", "jpeg::Uncompress
failed"). The `tf.data` path checks the cheap faults before decoding (an empty file, an unknown
format, a PNG without its end, another bit depth; `tf_pipeline`), but damage in the middle of
a file only shows in the decoder. When that happens during `fit`, `evaluate` or `predict` of a
`SiameseChangeModel`, or in `fit_distributed`, `naming_undecodable` reads the split's files
with the library's own reader, which names the file and the fault, and raises that instead.
A pipeline it does not know (a `tf.data.Dataset` built by hand) gets a note saying how to find
the file.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from siamese_cd.data.pipeline.dataset import PairedImageDataset
    >>> split = Path(tempfile.mkdtemp())
    >>> for folder in ("time1", "time2", "label"):
    ...     (split / folder).mkdir()
    ...     for stem in ("a", "b"):
    ...         Image.fromarray(np.zeros((16, 16), np.uint8)).save(split / folder / f"{stem}.png")
    >>> damaged = bytearray((split / "time2" / "b.png").read_bytes())
    >>> damaged[41:-12] = bytes(len(damaged) - 53)  # the compressed pixels, zeroed
    >>> _ = (split / "time2" / "b.png").write_bytes(bytes(damaged))
    >>> data = PairedImageDataset(split, batch_size=2)
    >>> try:
    ...     with naming_undecodable(data, progress=False):
    ...         batches = list(data.as_tf_dataset())
    ... except ImageReadError as error:
    ...     print(str(error).startswith(str(split / "time2" / "b.png") + ": cannot decode"))
    True
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from tqdm.auto import tqdm

from siamese_cd.data.readers.decoding import decode_fault
from siamese_cd.errors import ImageReadError

# The node names of TensorFlow's image decoders in an error message.
_DECODER = re.compile(r"\{\{node [\w/]*Decode(Png|Jpeg|Bmp|Gif|Image)\w*\}\}")
# The `SampleSource` behind each pipeline built by `PairedImageDataset.as_tf_dataset`.
_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
HINT = (
    "TensorFlow could not decode an image file and does not say which; "
    "`siamese-cd check DATA` names it"
)


def remember_source(dataset, source) -> None:
    """Record that the `tf.data.Dataset` `dataset` reads the files of `source`."""
    _SOURCES[dataset] = source


def _source_of(data):
    """The `SampleSource` behind a `PairedImageDataset` or a remembered pipeline, or None."""
    source = getattr(data, "source", None)
    if source is not None and hasattr(source, "pairs"):
        return source
    try:
        return _SOURCES.get(data)
    except TypeError:  # not hashable (arrays, tensors)
        return None


def is_decode_failure(error: BaseException) -> bool:
    """Whether `error` is a TensorFlow image decoder failing on the bytes of a file."""
    return _DECODER.search(str(error)) is not None


def find_undecodable(sources, *, progress: bool = True) -> ImageReadError | None:
    """The first file of `sources` the library's reader cannot decode, as an error naming it.

    Files are read in parallel threads (the decoders release the GIL), in split order.
    None if every file decodes.
    """
    files = [
        (role, path) for source in sources for pair in source.pairs for role, path in pair.files()
    ]
    pool = ThreadPoolExecutor(os.cpu_count() or 1)
    try:
        faults = pool.map(lambda file: decode_fault(file[1], label=file[0] == "label"), files)
        bar = tqdm(faults, total=len(files), disable=not progress, unit="file")
        bar.set_description("Finding the file TensorFlow could not decode")
        for fault in bar:
            if fault is not None:
                bar.close()
                return ImageReadError(fault)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return None


@contextmanager
def naming_undecodable(*datasets, progress: bool = True) -> Iterator[None]:
    """Turn a TensorFlow decoding failure into an `ImageReadError` naming the file.

    `datasets` are what the block reads: `PairedImageDataset` objects, pipelines from their
    ``as_tf_dataset()``, or anything else (ignored). If none of them is known, or every file
    of theirs decodes, the TensorFlow error is raised as it is, with a note saying how to find
    the file.
    """
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        if not is_decode_failure(error):
            raise
        sources = [s for s in map(_source_of, datasets) if s is not None]
        named = find_undecodable(sources, progress=progress) if sources else None
        if named is None:
            error.add_note(HINT)
            raise
        raise named from error
