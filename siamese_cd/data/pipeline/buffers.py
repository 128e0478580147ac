"""Batch arrays that TensorFlow adopts without a copy, recycled once nothing holds them.

Example:
    >>> buffers = BatchBuffers(limit=4)
    >>> batch = buffers.get((2, 8, 8, 3), np.uint8)
    >>> batch.shape, batch.ctypes.data % 64
    ((2, 8, 8, 3), 0)
    >>> address = batch.ctypes.data
    >>> del batch  # released: the next request of that shape gets the same memory
    >>> buffers.get((2, 8, 8, 3), np.uint8).ctypes.data == address
    True
"""

from __future__ import annotations

import sys
import threading

import numpy as np


def _aligned_empty(shape: tuple[int, ...], dtype=np.float32, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on an `align`-byte boundary.

    TensorFlow adopts 64-byte aligned, contiguous NumPy buffers without copying them, so
    aligned batches cross from Python to TensorFlow for free.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes].view(dtype).reshape(shape)


class BatchBuffers:
    """Recycles batch arrays that nothing references any more.

    A fresh 12 MB array costs page faults and zeroing by the kernel on every batch, about as
    much as filling it. An array is handed out again only when the pool holds the last
    references to it and to its memory (CPython reference counts), so a batch still held by
    Keras, TensorFlow (which adopts aligned arrays without copying) or the caller is never
    overwritten.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"limit": self.limit}  # buffers and locks stay in their process

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["limit"])

    def get(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        with self._lock:
            for array in self._arrays:
                # References: the list, `array` and the call's argument; the memory's owner is
                # referenced by `array` alone.
                if (
                    array.shape == shape
                    and array.dtype == dtype
                    and sys.getrefcount(array) == 3
                    and sys.getrefcount(array.base) == 2
                ):
                    return array
            array = _aligned_empty(shape, dtype)
            if len(self._arrays) < self.limit:
                self._arrays.append(array)
            return array
