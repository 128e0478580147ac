"""Load `.keras` change models, telling what a file is when it is not one.

`load_change_model` is the loader of every command and of the Python tools: it looks at the
file before Keras does, so a file that is not a change model is named with what it is (a
folder, an image, an HDF5 file, a damaged archive, a Keras model of another class) instead of
a Keras traceback about shapes or a "file not found" for a file that exists.

A `.keras` file is a zip archive holding ``config.json`` (the model's class and arguments),
``metadata.json`` and the weights (``model.weights.h5``). The checks, in order: the path
exists and is a file; its first bytes are a zip archive's (else common image formats, HDF5,
NumPy and SavedModel folders are named); the archive opens and every member passes its
checksum; ``config.json`` is there, is JSON, and names the class `SiameseChangeModel`; the
weights are there; the name ends in ``.keras`` (the only suffix Keras reads as this format).

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.keras"
    >>> _ = path.write_bytes(b"II*\\x00" + bytes(60))  # a TIFF header
    >>> describe_model_file(path)
    'not a Keras model file (a TIFF image)'
    >>> load_change_model(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    siamese_cd.errors.ModelFileError: .../m.keras: not a Keras model file (a TIFF image)
"""

from __future__ import annotations

import json
import re
import warnings
import zipfile
import zlib
from pathlib import Path

from siamese_cd.errors import ModelFileError

MODEL_CLASS = "SiameseChangeModel"
REGISTERED_NAME = f"siamese_cd>{MODEL_CLASS}"

# Leading bytes of files that are easily given by mistake, and what they are.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"II+\x00", "a BigTIFF image"),
    (b"MM\x00+", "a BigTIFF image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 image"),
    (b"BM", "a BMP image"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a legacy .h5 model or a weights file)"),
    (b"\x93NUMPY", "a NumPy array file"),
    (b"\x1f\x8b", "a gzip file"),
)
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def _kind_of_bytes(head: bytes) -> str | None:
    """What a file starting with `head` is, for the formats in `_SIGNATURES`; None if unknown."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    return next((kind for magic, kind in _SIGNATURES if head.startswith(magic)), None)


def _describe_folder(path: Path) -> str:
    if (path / "saved_model.pb").is_file():
        return (
            "a TensorFlow SavedModel folder (written by model.export), not a .keras model "
            "file; serve it with tf.saved_model.load, or give the .keras file it came from"
        )
    return "a folder, not a .keras model file"


def _describe_archive(path: Path) -> str | None:
    """The problem of a zip archive as a `.keras` change model; None if it is one."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()  # reads every member, checking its CRC
            if damaged is not None:
                return f"damaged zip archive ({damaged} fails its checksum)"
            if "config.json" not in names:
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                holds = f" (it holds {shown})" if names else " (an empty archive)"
                return f"no config.json inside: not a .keras model{holds}"
            raw = archive.read("config.json")
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError):
        return "truncated or damaged zip archive"
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "config.json inside is not JSON: a damaged .keras model"
    if not isinstance(config, dict) or "class_name" not in config:
        return "config.json inside describes no Keras object: not a .keras model"
    class_name = str(config["class_name"])
    registered = config.get("registered_name")
    if class_name != MODEL_CLASS or registered not in (None, REGISTERED_NAME):
        also = f" (registered as {registered})" if registered not in (None, class_name) else ""
        return f"a Keras model of class {class_name}{also}, not a {MODEL_CLASS}"
    if not any(name.startswith("model.weights") for name in names):
        return "no weights (model.weights.h5) inside: a damaged .keras model"
    return None


def describe_model_file(path: str | Path) -> str | None:
    """What is wrong with `path` as a `.keras` change model, in a few words; None if nothing.

    Only the file is read (its first bytes, the zip directory, ``config.json`` and the
    members' checksums); no model is built, so this is quick and never raises Keras errors.

    Raises:
        ModelFileError: if the file exists but cannot be read (e.g. no permission).
    """
    path = Path(path)
    if not path.exists():
        return "no such model file"
    if path.is_dir():
        return _describe_folder(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read the file ({error.strerror})") from None
    if not head:
        return "the file is empty: not a Keras model file"
    exported = "a LiteRT model" if head[4:8] == b"TFL3" else None
    if exported or path.suffix.lower() == ".onnx":
        return (
            f"{exported or 'an ONNX model'}, not a .keras model file: siamese-cd predict runs "
            "models written by siamese-cd export; other uses need the .keras model"
        )
    if not head.startswith(_ZIP_SIGNATURES):
        kind = _kind_of_bytes(head)
        return f"not a Keras model file ({kind or 'not a zip archive'})"
    problem = _describe_archive(path)
    if problem is None and path.suffix != ".keras":
        return (
            f"a .keras model archive named {path.suffix or 'without a suffix'}; Keras reads "
            "this format only from names ending in .keras: rename it"
        )
    return problem


def load_change_model(path: str | Path):
    """Load a `SiameseChangeModel` from a `.keras` file, naming the file and the problem if
    it is not one (see the module docstring for the checks).

    Returns:
        The model, compiled as it was saved.

    Raises:
        ModelFileError: the path is missing, a folder, another kind of file, a truncated or
            damaged archive, a `.keras` file without ``config.json``, a Keras model of another
            class, or a change model whose contents Keras cannot put together.
    """
    path = Path(path)
    problem = describe_model_file(path)
    if problem is not None:
        raise ModelFileError(f"{path}: {problem}")
    import keras

    import siamese_cd.models.siamese  # noqa: F401  (registers the classes for loading)

    # Keras's warnings while loading are held back: explained by an error, they are noise.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception as error:
            # The file passed every check that reading it allows, so whatever Keras raises
            # now (a weight of the wrong shape, an argument this version does not know, a
            # damaged HDF5 member) means its parts do not fit together.
            raise ModelFileError(
                f"{path}: a {MODEL_CLASS} file whose contents Keras cannot load "
                f"({_load_failure(error)}); save the model again"
            ) from error
    # For a layer without stored weights Keras only warns and keeps random initial weights:
    # such a model would predict noise.
    skipped = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
    if skipped:
        raise ModelFileError(
            f"{path}: a {MODEL_CLASS} file with layers whose weights are not stored "
            f"({skipped[0].split(':')[0]}); save the model again"
        )
    for warning in caught:  # the rest, as they would have been shown (deprecations stay quiet)
        if not issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning)):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return model


def _load_failure(error: Exception) -> str:
    """Keras's loading error in one short line (its messages print whole weight arrays)."""
    text = str(error)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    if shapes is not None:
        return (
            f"the stored weights do not fit the network config.json describes: a weight of "
            f"shape {shapes.group(2)} for a variable of shape {shapes.group(1)}"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [""]
    if "could not be loaded" in lines[0] and len(lines) > 1:  # the next line says why
        return f"the stored weights do not fit the network config.json describes: {lines[1][:200]}"
    return f"{type(error).__name__}: {lines[0][:200]}"
