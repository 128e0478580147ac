"""Atomic file writes: a file is either its old self or its complete new self, never half.

Every file the library writes goes through here. The new content is written to a hidden file
beside the target (same folder, so the same file system), flushed to disk, then renamed over
the target with `os.replace`, which is atomic on POSIX and Windows. If writing fails (a full
disk, a missing permission) the hidden file is removed, the previous target is left as it was,
and `FileWriteError` names the target and the cause.

`atomic_path` serves writers that take a path (``model.save``, ``np.savez``, rasterio,
Pillow): the hidden name ends with the target's own name, so writers that check or add a
suffix (``.keras``, ``.weights.h5``, ``.npz``) see the one they expect.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_text(folder / "scores.json", '{"f1": 0.5}\\n')
    >>> (folder / "scores.json").read_text()
    '{"f1": 0.5}\\n'
    >>> import numpy as np
    >>> with atomic_path(folder / "index.npz") as temporary:
    ...     np.savez(temporary, offsets=np.arange(3))
    >>> sorted(p.name for p in folder.iterdir())
    ['index.npz', 'scores.json']
    >>> try:
    ...     with atomic_path(folder / "scores.json") as temporary:  # a failing writer
    ...         raise OSError(28, "No space left on device")
    ... except FileWriteError as error:
    ...     print(str(error).replace(str(folder), "FOLDER"))
    FOLDER/scores.json: cannot write (No space left on device); the previous file is unchanged
    >>> (folder / "scores.json").read_text()  # still the old content
    '{"f1": 0.5}\\n'
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from siamese_cd.errors import FileWriteError


def temporary_name(target: Path) -> Path:
    """A hidden, unique name beside `target` that ends with `target`'s own name."""
    return target.parent / f".tmp-{secrets.token_hex(4)}-{target.name}"


def describe(error: BaseException) -> str:
    """The cause of a failed write in words, e.g. ``No space left on device``.

    Writers wrap OS errors in their own (h5py, zipfile, GDAL); the errno, or the words of a
    known one in the message, is the useful part.
    """
    number = getattr(error, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        return os.strerror(number)
    text = str(error)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EFBIG):
        if os.strerror(code).lower() in text.lower() or f"errno = {code}" in text:
            return os.strerror(code)
    cause = error.__cause__ or error.__context__
    if cause is not None and cause is not error:
        return describe(cause)
    return text or type(error).__name__


def fsync_path(path: Path) -> None:
    """Flush a written file (or, on POSIX, a folder's entries) to the disk."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        descriptor = os.open(path, flags)
    except OSError:  # pragma: no cover - folders cannot be opened on Windows
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        if path.is_dir():  # some file systems cannot sync a folder; the file itself is synced
            return
        raise error
    finally:
        os.close(descriptor)


def _error(target: Path, error: BaseException) -> FileWriteError:
    return FileWriteError(
        f"{target}: cannot write ({describe(error)}); the previous file is unchanged"
    )


def _remove(path: Path) -> None:
    if path.is_dir():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Give a writer a hidden path beside `target`; on success move it over `target`.

    The file written there is flushed to disk and renamed over `target`. If the block raises
    an `OSError` (or a writer's error wrapping one), the hidden file is removed, `target` is
    untouched, and `FileWriteError` names `target` and the cause. Other errors pass through
    unchanged, after the clean-up. The target's folder must exist.

    Raises:
        FileWriteError: if the file could not be written or moved into place.
    """
    target = Path(target)
    temporary = temporary_name(target)
    try:
        yield temporary
        if not temporary.exists():
            raise FileWriteError(f"{target}: the writer produced no file")
        if temporary.is_file():
            fsync_path(temporary)
        os.replace(temporary, target)
        fsync_path(target.parent)
    except FileWriteError:
        _remove(temporary)
        raise
    except Exception as error:
        _remove(temporary)
        if _is_write_failure(error):
            raise _error(target, error) from error
        raise


def _is_write_failure(error: BaseException) -> bool:
    """Whether `error` is, or wraps, a failure of the file system rather than of the data."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError):
            return True
        if "No space left on device" in str(error) or "errno = 28" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `target` atomically (see `atomic_path`)."""
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()


def write_text(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `target` atomically (see `atomic_path`)."""
    write_bytes(target, text.encode(encoding))


def check_writable_folder(folder: str | os.PathLike, what: str = "files") -> Path:
    """Create `folder` if needed and write (then remove) a probe file in it, before any work.

    A run that can only fail when it first saves, an epoch or an hour later, fails here at
    once instead.

    Args:
        folder: the folder that will be written to.
        what: what will be written there, as the message names it, e.g. ``"logs"``.

    Returns:
        The folder, as a `pathlib.Path`.

    Raises:
        FileWriteError: naming the folder and the cause (a file in the way, no permission, a
            read-only file system, no space).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileWriteError(f"{folder}: is a file, not a folder, so the {what} cannot go there")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FileWriteError(
            f"{folder}: cannot create the folder for the {what} ({describe(error)})"
        ) from error
    probe = temporary_name(folder / "write-test")
    try:
        with open(probe, "xb") as handle:
            handle.write(b"\0")
    except OSError as error:
        raise FileWriteError(
            f"{folder}: cannot write the {what} there ({describe(error)})"
        ) from error
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return folder


def check_writable_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Check that file `path` can be written (atomically, see `atomic_path`), before any work.

    Its folder is created and probed with `check_writable_folder`; an existing folder of
    that name is refused, as it cannot be replaced by a file.

    Raises:
        FileWriteError: naming the path and the cause.
    """
    path = Path(path)
    if path.is_dir():
        raise FileWriteError(f"{path}: is a folder, so the {what} cannot be written there")
    check_writable_folder(path.parent, what)
    return path
