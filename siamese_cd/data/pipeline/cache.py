"""A compact on-disk store of decoded scenes, so decoding is paid once, not every epoch.

Each scene is stored as its raw pixels in their own type (uint8 for 8-bit files, so a 256 x 256
RGB pair and its mask take 458 KB, a quarter of float32), the mask already binarised to 0/1.
The store lives in ``<cache_dir>/<name>-<fingerprint>/``:

- ``data.bin``: the scenes back to back, each ``t1 | t2 | mask``, C-order (H, W, C);
- ``index.npz``: byte offset and (height, width) of each scene;
- ``meta.json``: pixel type, band count and what was cached; written last, so a store without
  it is incomplete and is never read.

The fingerprint hashes the list of files with their sizes and modification times and the
decoding options (bands, grayscale handling, label threshold). Changing any of them gives a new
fingerprint, hence a new store, instead of stale data. Old stores are left in place; delete
them when no longer needed.

Reads use ``pread`` into fresh buffers: the process holds only the scenes being read, and the
operating system's page cache, not the process, keeps recently read data. Resident memory does
not grow with the size of the store, as it would walking a memory map of it end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from siamese_cd.atomic import atomic_path, describe, write_text
from siamese_cd.data.layouts.pairing import Pair
from siamese_cd.data.readers.decoding import Window
from siamese_cd.errors import DatasetError, FileWriteError, ImageReadError

CACHE_FORMAT = 1
META_NAME = "meta.json"
DATA_NAME = "data.bin"
INDEX_NAME = "index.npz"

ReadPair = Callable[[int], tuple[np.ndarray, np.ndarray, "np.ndarray | None"]]


def fingerprint(pairs: Sequence[Pair], options: dict) -> str:
    """Hash of the files (paths, sizes, modification times) and of the decoding options.

    Raises:
        DatasetError: if a file has disappeared since the split was listed.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, **options}, sort_keys=True).encode())
    for pair in pairs:
        for role, path in pair.files():
            # A date of OSCD is a folder of band files: a band rewritten in place changes
            # neither the folder's size nor its time, so each file counts.
            files = sorted(Path(path).iterdir()) if os.path.isdir(path) else [path]
            for file in files:
                try:
                    stat = os.stat(file)
                except OSError as error:
                    raise DatasetError(f"{file}: cannot read file information ({error})") from error
                digest.update(
                    f"{role}\0{os.path.abspath(file)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
                )
    return digest.hexdigest()


def _pread_into(fd: int, buffers: Sequence[np.ndarray], offset: int, path: Path) -> None:
    """Fill `buffers`, in order, from consecutive bytes of the file at `offset`."""
    views = [memoryview(buffer).cast("B") for buffer in buffers]
    total = sum(len(view) for view in views)
    done = os.preadv(fd, views, offset) if hasattr(os, "preadv") else 0
    if done == total:
        return
    # A short read (rare: signals, network file systems): finish view by view.
    position = offset
    for view in views:
        start = min(max(done - (position - offset), 0), len(view))
        while start < len(view):
            chunk = os.pread(fd, len(view) - start, position + start)
            if not chunk:
                raise ImageReadError(
                    f"{path}: the cache store ends early (offset {position + start}); delete "
                    "its folder to rebuild it"
                )
            view[start : start + len(chunk)] = chunk
            start += len(chunk)
        position += len(view)


class DecodedCache:
    """Random-access reader of a store of decoded scenes (see the module docstring).

    Use `DecodedCache.open_or_build`; `PairedImageDataset(cache_dir=...)` does it for you.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from siamese_cd.data.layouts.pairing import Pair
        >>> folder = Path(tempfile.mkdtemp())
        >>> pairs = [Pair("a", folder / "a1.png", folder / "a2.png", None)]
        >>> for path in pairs[0].files()[:2]:
        ...     path[1].write_bytes(b"stand-in")  # the fingerprint reads sizes and times
        8
        8
        >>> def read_pair(i):
        ...     return np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8), None
        >>> cache = DecodedCache.open_or_build(
        ...     folder / "cache", pairs, read_pair, options={}, name="train", progress=False)
        >>> t1, t2, mask = cache.read(0)
        >>> t1.shape, int(t2.max()), mask
        ((4, 4, 3), 1, None)
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        try:
            meta = json.loads((self.directory / META_NAME).read_text())
            with np.load(self.directory / INDEX_NAME) as index:
                self.offsets = index["offsets"]
                self.shapes = index["shapes"]
        except (OSError, ValueError, KeyError) as error:
            raise DatasetError(f"{self.directory}: not a readable cache store ({error})") from error
        if meta.get("format") != CACHE_FORMAT:
            raise DatasetError(
                f"{self.directory}: cache format {meta.get('format')}, expected {CACHE_FORMAT}"
            )
        self.meta = meta
        self.dtype = np.dtype(meta["dtype"])
        self.channels = int(meta["channels"])
        self.labelled = bool(meta["labelled"])
        self.path = self.directory / DATA_NAME
        self._fd: int | None = None
        self._fd_pid: int | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self) -> dict:
        # A file descriptor does not survive pickling; each process opens its own.
        state = self.__dict__.copy()
        state.update(_fd=None, _fd_pid=None, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:
            with self._lock:
                if self._fd is None or self._fd_pid != pid:
                    self._fd = os.open(self.path, os.O_RDONLY)
                    self._fd_pid = pid
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def scene_bytes(self, index: int) -> tuple[int, int]:
        """Bytes of one image and of the mask of scene `index`."""
        height, width = (int(v) for v in self.shapes[index])
        image = height * width * self.channels * self.dtype.itemsize
        return image, height * width if self.labelled else 0

    def read(
        self, index: int, window: Window | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Scene `index` as ``(t1, t2, mask)``: (H, W, C) images and an (H, W) 0/1 mask.

        With a `window` ``(top, left, height, width)`` only its rows are read from disk.
        """
        fd = self._descriptor()
        height, width = (int(v) for v in self.shapes[index])
        image_bytes, mask_bytes = self.scene_bytes(index)
        start = int(self.offsets[index])
        if window is None:
            buffer = np.empty(2 * image_bytes + mask_bytes, np.uint8)
            _pread_into(fd, [buffer], start, self.path)
            shape = (height, width, self.channels)
            t1 = buffer[:image_bytes].view(self.dtype).reshape(shape)
            t2 = buffer[image_bytes : 2 * image_bytes].view(self.dtype).reshape(shape)
            mask = buffer[2 * image_bytes :].reshape(height, width) if self.labelled else None
            return t1, t2, mask
        top, left, h, w = window
        parts = [
            (start, self.channels, self.dtype),
            (start + image_bytes, self.channels, self.dtype),
        ]
        if self.labelled:
            parts.append((start + 2 * image_bytes, 1, np.dtype(np.uint8)))
        arrays = []
        for offset, bands, dtype in parts:
            row = width * bands * dtype.itemsize
            buffer = np.empty(h * row, np.uint8)
            _pread_into(fd, [buffer], offset + top * row, self.path)
            arrays.append(buffer.view(dtype).reshape(h, width, bands)[:, left : left + w])
        mask = arrays[2][..., 0] if self.labelled else None
        return arrays[0], arrays[1], mask

    def uniform_size(self, indices: Sequence[int]) -> tuple[int, int] | None:
        """The (height, width) shared by these scenes, or None if their sizes differ."""
        sizes = self.shapes[np.asarray(indices, dtype=np.intp)]
        if len(sizes) and (sizes == sizes[0]).all():
            return int(sizes[0][0]), int(sizes[0][1])
        return None

    def read_batch(
        self, indices: Sequence[int], out: tuple[np.ndarray, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Scenes of one size read straight into batch arrays, one system call per scene.

        Args:
            indices: scene numbers; their scenes must share one size (see `uniform_size`).
            out: optional ``(t1, t2[, mask])`` arrays of shape (N, H, W, C) and (N, H, W) to
                read into.

        Returns:
            ``(t1, t2, mask)`` arrays of shape (N, H, W, C), (N, H, W, C) and (N, H, W).
        """
        size = self.uniform_size(indices)
        if size is None:
            raise ValueError("read_batch needs scenes of one size")
        count = len(indices)
        if out is None:
            image = (count, *size, self.channels)
            out = (np.empty(image, self.dtype), np.empty(image, self.dtype))
            if self.labelled:
                out += (np.empty((count, *size), np.uint8),)
        fd = self._descriptor()
        for k, index in enumerate(indices):
            _pread_into(fd, [array[k] for array in out], int(self.offsets[index]), self.path)
        return out[0], out[1], out[2] if self.labelled else None

    @classmethod
    def open_or_build(
        cls,
        cache_dir: str | Path,
        pairs: Sequence[Pair],
        read_pair: ReadPair,
        *,
        options: dict,
        name: str = "split",
        workers: int = 1,
        progress: bool = True,
    ) -> DecodedCache:
        """Open the store for these files and options, building it first if it is missing.

        Args:
            cache_dir: folder holding stores; several splits can share it.
            pairs: the scenes, in the order `read` numbers them.
            read_pair: decodes scene ``i`` as ``(t1, t2, mask)`` integer arrays, checking
                that their sizes agree.
            options: decoding options that change the decoded pixels; part of the fingerprint.
            name: readable prefix of the store's folder name, e.g. the split name.
            workers: decoding threads while building.
            progress: show a progress bar while building.

        Raises:
            DatasetError: if the cache folder cannot be written, or the images of the split
                differ in band count or pixel type (the message names the file).
            ImageReadError: if a file cannot be decoded or its sizes disagree.
        """
        cache_dir = Path(cache_dir)
        key = fingerprint(pairs, options)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "split"
        directory = cache_dir / f"{safe}-{key[:16]}"
        if (directory / META_NAME).is_file():
            cache = cls(directory)
            if cache.meta.get("fingerprint") == key and len(cache) == len(pairs):
                return cache
            raise DatasetError(f"{directory}: holds another store; delete the folder to rebuild")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            building = cache_dir / f".building-{safe}-{key[:16]}-{uuid.uuid4().hex[:8]}"
            building.mkdir()
        except OSError as error:
            raise DatasetError(f"{cache_dir}: cannot create the cache folder ({error})") from error
        try:
            _write_store(building, pairs, read_pair, key, options, workers, progress, directory)
            try:
                os.rename(building, directory)
            except OSError:
                if not (directory / META_NAME).is_file():
                    raise
                shutil.rmtree(building, ignore_errors=True)  # another process finished first
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return cls(directory)


def _decoded_in_order(read_pair: ReadPair, count: int, workers: int):
    """Scenes ``0 .. count - 1`` decoded in `workers` threads, yielded in order."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        # A bounded window of pending decodes keeps memory flat on any split size.
        pending: deque = deque()
        next_index = 0
        for _ in range(count):
            while next_index < count and len(pending) < 2 * max(1, workers):
                pending.append(pool.submit(read_pair, next_index))
                next_index += 1
            yield pending.popleft().result()


def _check_like_first(path: Path, image: np.ndarray, first: tuple) -> None:
    """A cached split holds one band count and pixel type: those of its first image."""
    if (image.shape[-1], image.dtype) != first[1:]:
        raise DatasetError(
            f"{path}: {image.shape[-1]} band(s) of {image.dtype}, but {first[0]} has "
            f"{first[1]} of {first[2]}; a cached split needs one band count and pixel type "
            "(select bands with bands=)"
        )


def _write_store(
    folder: Path,
    pairs: Sequence[Pair],
    read_pair: ReadPair,
    key: str,
    options: dict,
    workers: int,
    progress: bool,
    final: Path,
) -> None:
    count = len(pairs)
    offsets = np.zeros(count, np.int64)
    shapes = np.zeros((count, 2), np.int32)
    first: tuple[Path, int, np.dtype] | None = None
    labelled = pairs[0].label is not None
    position = 0
    bar = tqdm(
        total=count, desc=f"Caching decoded pairs in {final}", unit="pair", disable=not progress
    )
    try:
        with open(folder / DATA_NAME, "wb") as out:
            for i, (t1, t2, mask) in enumerate(_decoded_in_order(read_pair, count, workers)):
                first = first or (pairs[i].t1, t1.shape[-1], t1.dtype)
                for path, image in ((pairs[i].t1, t1), (pairs[i].t2, t2)):
                    _check_like_first(path, image, first)
                offsets[i] = position
                shapes[i] = t1.shape[:2]
                for array in (t1, t2) + ((mask,) if labelled else ()):
                    data = np.ascontiguousarray(array)
                    out.write(memoryview(data).cast("B"))
                    position += data.nbytes
                bar.update(1)
    except OSError as error:
        raise FileWriteError(
            f"{folder / DATA_NAME}: cannot write the cache store ({describe(error)})"
        ) from error
    finally:
        bar.close()
    with atomic_path(folder / INDEX_NAME) as temporary:
        np.savez(temporary, offsets=offsets, shapes=shapes)
    meta = {
        "format": CACHE_FORMAT,
        "fingerprint": key,
        "count": count,
        "dtype": first[2].str if first else "|u1",
        "channels": int(first[1]) if first else 0,
        "labelled": labelled,
        "bytes": position,
        "options": options,
        "first_t1": str(pairs[0].t1) if pairs else None,
    }
    write_text(folder / META_NAME, json.dumps(meta, indent=2) + "\n")
