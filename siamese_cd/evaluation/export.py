"""Export a change model for serving: a SavedModel folder, an ONNX file or a LiteRT file.

Every format holds the whole model as ``predict`` uses it, so a server needs no code of
this package:

- inputs ``t1`` and ``t2``, each (batch, height, width, bands), in the training pixel type
  (the preprocessor's ``pixel_dtype``: uint8, uint16 or float32; float32 when the model never
  saw data; ``pixel_dtype=`` chooses another). Batch, height and width are dynamic in all
  three formats: ONNX's axes are free dimensions, LiteRT's shape signature is -1 and the
  interpreter resizes its inputs to each call's.
- the pixel scaling (`ChangePreprocessor`) and, for ``alignment="keras"`` networks, the
  padding to a multiple of ``2**depth`` and the crop back, inside the graph.
- outputs ``probability``, float32 (B, H, W, 1), the change probability (channel 1 of a
  2-class head), and ``mask``, uint8 (B, H, W, 1), 1 where the probability reaches the model's
  threshold. The threshold and the pixel type are recorded in the file's metadata too
  (`siamese_cd.evaluation.runtimes.METADATA_KEY`), where ``siamese-cd predict`` reads them.
- float32 arithmetic: a model computing in another precision (``mixed_bfloat16``) is copied
  into a float32 one with the same weights first (`float32_model`).

The converters are the formats' own: Keras's ``ExportArchive`` (SavedModel), Keras's ONNX
export (tf2onnx) and its LiteRT export (TensorFlow's LiteRT converter, held to builtin ops,
so the plain LiteRT interpreter runs the file). tf2onnx, onnxruntime and the LiteRT runtime
are the optional extra ``pip install 'siamese_cd[export]'``.

Each file is checked before it replaces anything: its own runtime runs it on a pair of odd
size, and its probability must be within `TOLERANCE` of the Keras model's, its mask equal
wherever the probability is not within `TOLERANCE` of the threshold.

This module lives in `siamese_cd.evaluation`, beside inference, rather than in
`siamese_cd.models`: an export is a way of serving a trained model, not part of the network,
and it is checked with the runtimes of `siamese_cd.evaluation.runtimes` that
``siamese-cd predict`` runs exported files with, so writer and reader sit together.
`SiameseChangeModel.export` imports it only when called.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from siamese_cd.atomic import atomic_path, temporary_name
from siamese_cd.errors import ConfigError, ExportError, PixelTypeWarning
from siamese_cd.evaluation.runtimes import (
    FORMAT_NAMES,
    METADATA_KEY,
    SAVED_MODEL_METADATA,
    load_exported_model,
    require_modules,
)
from siamese_cd.models.losses import change_probability
from siamese_cd.models.preprocessing import served_type_problem

FORMATS = ("saved_model", "onnx", "litert")
# Other names taken for a format: Keras's for the SavedModel, the old name of LiteRT.
ALIASES = {"tf_saved_model": "saved_model", "tflite": "litert"}
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}
PIXEL_TYPES = ("uint8", "uint16", "float32")
# Largest difference allowed between the exported model's change probability and Keras's.
TOLERANCE = 1e-4
# What each format's converter and runtime need beyond the core install.
REQUIRED_MODULES = {
    "saved_model": (),
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
    "litert": ("ai_edge_litert",),
}
# Suffixes of files, which a SavedModel folder's name must not end with.
_FILE_SUFFIXES = (".onnx", ".tflite", ".keras", ".h5", ".pb", ".zip")


@dataclass(frozen=True)
class ExportSummary:
    """What `export_model` wrote: the path, the format, the inputs' pixel type, the largest
    difference from the Keras model's probability found by the check (None unchecked), and
    whether a float32 copy of the model was exported."""

    path: Path
    format: str
    pixel_dtype: str
    largest_difference: float | None
    copied_to_float32: bool


def export_format(name: str) -> str:
    """The format called `name`: one of `FORMATS`, or an alias (``"tf_saved_model"``,
    ``"tflite"``).

    Raises:
        ExportError: for another name.

    Example:
        >>> export_format("tf_saved_model"), export_format("onnx")
        ('saved_model', 'onnx')
    """
    resolved = ALIASES.get(name, name)
    if resolved not in FORMATS:
        raise ExportError(f"unknown export format {name!r}: choose {', '.join(FORMATS)}")
    return resolved


def check_export_path(path: str | Path, format: str) -> Path:
    """`path` as the output of an export in `format`, checked before anything is loaded.

    ONNX files end in ``.onnx``, LiteRT files in ``.tflite``; a SavedModel is a folder (new,
    empty, or an earlier SavedModel, which is replaced) whose name has no file suffix.

    Raises:
        ExportError: an unknown format, or a path that does not fit it.

    Example:
        >>> check_export_path("model.tflite", "litert").name
        'model.tflite'
        >>> check_export_path("model.onnx", "litert")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        siamese_cd.errors.ExportError: model.onnx: LiteRT files end in .tflite (.onnx is ...)
    """
    path, format = Path(path), export_format(format)
    suffix = path.suffix.lower()
    other = next((name for name, end in SUFFIXES.items() if end == suffix), None)
    hint = (
        f" ({suffix} is the {FORMAT_NAMES[other]} format's suffix: --format {other})"
        if other
        else ""
    )
    if format == "saved_model":
        if suffix in _FILE_SUFFIXES:
            raise ExportError(
                f"{path}: a SavedModel is a folder; name it without a file suffix{hint}"
            )
        if path.exists() and not path.is_dir():
            raise ExportError(f"{path}: a file; a SavedModel is written as a folder")
        if path.is_dir() and any(path.iterdir()) and not (path / "saved_model.pb").is_file():
            raise ExportError(
                f"{path}: a folder holding other files; write the SavedModel to a new or "
                "empty folder (an earlier SavedModel there is replaced)"
            )
        return path
    if path.suffix != SUFFIXES[format]:
        raise ExportError(f"{path}: {FORMAT_NAMES[format]} files end in {SUFFIXES[format]}{hint}")
    if path.is_dir():
        raise ExportError(f"{path}: a folder; give the {FORMAT_NAMES[format]} file's name")
    return path


def check_export_request(path: str | Path, format: str) -> Path:
    """`check_export_path`, and the format's converter and runtime installed.

    Raises:
        ExportError: a bad format or path, or a missing extra (``pip install
            'siamese_cd[export]'``).
    """
    path = check_export_path(path, format)
    format = export_format(format)
    require_modules(REQUIRED_MODULES[format], f"exporting to {FORMAT_NAMES[format]}")
    return path


def computes_in_float32(model: keras.Model) -> bool:
    """Whether every layer of `model`, nested ones included, computes in float32."""
    # _flatten_layers reaches layers held inside layers (the preprocessor's), which no
    # public listing does.
    return all(
        layer.compute_dtype == "float32"
        for layer in model._flatten_layers(include_self=True, recursive=True)
    )


def float32_model(model: keras.Model) -> keras.Model:
    """`model` itself if it computes in float32, else a float32 copy with its weights.

    A model trained under ``mixed_bfloat16`` (or any other policy) is rebuilt from its config
    with ``dtype="float32"`` and given the same weights, cast to float32.
    """
    if computes_in_float32(model):
        return model
    copy = type(model).from_config({**model.get_config(), "dtype": "float32"})
    if len(copy.weights) != len(model.weights):
        raise ConfigError(
            f"the float32 copy of the model has {len(copy.weights)} weights, the model "
            f"{len(model.weights)}: its config does not rebuild it"
        )
    for target, value in zip(copy.weights, model.weights):
        target.assign(keras.ops.cast(value, target.dtype))
    return copy


class _Serving(keras.Model):
    """What every format serves: raw ``(t1, t2)`` in, ``probability`` and ``mask`` out."""

    def __init__(self, model: keras.Model):
        # float32 whatever the global policy: Keras would cast float inputs to it.
        super().__init__(name="serving", dtype="float32")
        self.change_model = model
        self.threshold = float(model.threshold)
        self.built = True  # its only layer, the change model, is built

    def call(self, inputs):
        t1, t2 = inputs
        probability = change_probability(self.change_model((t1, t2), training=False))
        mask = keras.ops.cast(probability >= self.threshold, "uint8")
        return {"probability": probability, "mask": mask}


def export_pixel_type(model: keras.Model, pixel_dtype: str | None = None) -> str:
    """The inputs' pixel type: `pixel_dtype`, else the training data's, else float32."""
    trained = getattr(model.preprocessor, "pixel_dtype", None)
    chosen = pixel_dtype or trained or "float32"
    chosen = "float32" if "float" in chosen else chosen
    if chosen not in PIXEL_TYPES:
        raise ExportError(f"pixel type {chosen!r}: exports take {', '.join(PIXEL_TYPES)}")
    problem = served_type_problem(model.preprocessor.scaling, trained, chosen)
    if pixel_dtype is not None and problem is not None:
        warnings.warn(f"exporting for {chosen} pixels: {problem}", PixelTypeWarning, stacklevel=3)
    return chosen


def export_metadata(model: keras.Model, pixel_dtype: str) -> dict:
    """What the exported file records besides the graph (read by the runtimes)."""
    preprocessor = model.preprocessor
    return {
        "threshold": float(model.threshold),
        "pixel_dtype": pixel_dtype,
        "trained_pixel_dtype": preprocessor.pixel_dtype,
        "scaling": preprocessor.scaling,
        "in_channels": int(model.in_channels),
        "num_classes": int(model.num_classes),
        **{name: getattr(model.backbone, name, None) for name in ("variant", "depth", "alignment")},
    }


def _specs(model: keras.Model, pixel_dtype: str) -> list:
    import tensorflow as tf

    shape = (None, None, None, int(model.in_channels))
    return [tf.TensorSpec(shape, pixel_dtype, name=name) for name in ("t1", "t2")]


def _write_saved_model(serving: _Serving, path: Path, specs: list, metadata: dict) -> None:
    def serve(t1, t2):
        return serving((t1, t2))

    archive = keras.export.ExportArchive()
    archive.track(serving)
    archive.add_endpoint("serve", serve, input_signature=specs)
    archive.write_out(str(path), verbose=False)
    (path / SAVED_MODEL_METADATA).parent.mkdir(exist_ok=True)
    (path / SAVED_MODEL_METADATA).write_text(json.dumps(metadata, indent=1) + "\n")


def _write_onnx(serving: _Serving, path: Path, specs: list, metadata: dict) -> None:
    import onnx

    try:
        with warnings.catch_warnings():
            # Keras's tf2onnx patch for NumPy 2 probes np.object, which NumPy warns about.
            warnings.simplefilter("ignore", FutureWarning)
            serving.export(str(path), format="onnx", input_signature=[specs], verbose=False)
    except Exception as error:  # tf2onnx raises its own and TensorFlow's errors
        failure = _converter_failure(error)
        raise ExportError(f"{path}: the ONNX converter (tf2onnx) failed: {failure}") from None
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(proto, str(path))


def _write_litert(serving: _Serving, path: Path, specs: list, metadata: dict) -> None:
    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    # Builtin ops only: a graph needing TensorFlow ops (Flex) would convert, then fail in
    # the plain interpreter.
    builtins = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    try:
        serving.export(
            str(path), format="litert", input_signature=[specs], verbose=False, target_spec=builtins
        )
    except Exception as error:  # the converter's ConverterError carries the MLIR dump
        failure = _converter_failure(error)
        raise ExportError(f"{path}: the LiteRT converter failed: {failure}") from None
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    model.buffers.append(
        schema.BufferT(data=np.frombuffer(json.dumps(metadata).encode(), np.uint8))
    )
    entry = schema.MetadataT(name=METADATA_KEY, buffer=len(model.buffers) - 1)
    model.metadata = [*(model.metadata or []), entry]
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def _converter_failure(error: Exception) -> str:
    """A converter's error in one line: for LiteRT, the TensorFlow ops it could not convert."""
    import re

    text = str(error)
    ops = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)))
    if ops:
        return f"no LiteRT builtin op for {', '.join(ops)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(error).__name__]
    return lines[0][:200]


_WRITERS = {"saved_model": _write_saved_model, "onnx": _write_onnx, "litert": _write_litert}


def _sample_pair(model: keras.Model, pixel_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Two batches of odd size whose pixels look like the training data's."""
    depth = getattr(model.backbone, "depth", 4) or 4
    height = max(37, 2**depth + 5)
    shape = (2, height, height + 8, int(model.in_channels))
    preprocessor = model.preprocessor
    rng = np.random.default_rng(0)
    if preprocessor.scaling == "standardize":
        center, spread = preprocessor.mean, np.sqrt(preprocessor.variance)
    elif pixel_dtype in ("uint8", "uint16"):
        top = np.iinfo(pixel_dtype).max
        center, spread = top / 2, top / 4
    else:
        center, spread = 0.5, 0.25
    pixels = rng.normal(center, spread, (2, *shape))
    if pixel_dtype != "float32":
        pixels = np.clip(np.rint(pixels), 0, np.iinfo(pixel_dtype).max)
    t1, t2 = pixels.astype(pixel_dtype)
    return t1, t2


def check_export(model: keras.Model, path: str | Path, pixel_dtype: str) -> float:
    """Run the exported file with its runtime and compare it with `model` (module docstring).

    Returns:
        The largest difference of the change probabilities.

    Raises:
        ExportError: the file does not predict as `model` does, naming the difference.
    """
    exported = load_exported_model(path)
    t1, t2 = _sample_pair(model, pixel_dtype)
    expected = np.asarray(change_probability(np.asarray(model.predict_on_batch((t1, t2)))))
    outputs = exported.predict((t1, t2))
    probability, mask = outputs["probability"], outputs["mask"]
    if probability.shape != expected.shape or mask.dtype != np.uint8:
        raise ExportError(
            f"{path}: the exported model gives {probability.shape} probabilities and a "
            f"{mask.dtype} mask, the Keras model {expected.shape}"
        )
    difference = float(np.max(np.abs(probability - expected)))
    clear = np.abs(expected - model.threshold) > TOLERANCE  # pixels whose side is certain
    wrong = int(np.sum((mask == 1) != (expected >= model.threshold), where=clear))
    if difference > TOLERANCE or wrong:
        raise ExportError(
            f"{path}: the exported model's change probability differs from the Keras model's "
            f"by up to {difference:.2g} (allowed {TOLERANCE:g}) and its mask in {wrong} "
            "pixel(s); the conversion changed the arithmetic"
        )
    return difference


def export_model(
    model: keras.Model,
    path: str | Path,
    format: str = "saved_model",
    *,
    pixel_dtype: str | None = None,
    check: bool = True,
    verbose: bool = False,
) -> ExportSummary:
    """Export `model` (a `SiameseChangeModel`) for serving; see the module docstring.

    Args:
        model: the change model; its preprocessing must be set (fitted or given).
        path: an ``.onnx`` file, a ``.tflite`` file, or a SavedModel folder
            (`check_export_path`). Written atomically: a failed export leaves no file.
        format: ``"saved_model"`` (or ``"tf_saved_model"``), ``"onnx"`` or ``"litert"``.
        pixel_dtype: the inputs' pixel type; default the training data's (float32 if none
            was recorded). Another than the training type warns (`PixelTypeWarning`).
        check: run the written file with its runtime and compare it with the Keras model.
        verbose: print one line naming what was written.

    Raises:
        ExportError: an unknown format, a path that does not fit it, a missing converter or
            runtime, a graph the converter cannot translate, or a file failing the check.
        ConfigError: a model whose preprocessing has not seen training data.

    Example:
        >>> import tempfile
        >>> from siamese_cd import SiameseChangeModel
        >>> model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
        >>> summary = export_model(model, Path(tempfile.mkdtemp()) / "served")
        >>> summary.format, summary.pixel_dtype, summary.largest_difference < TOLERANCE
        ('saved_model', 'float32', True)
    """
    format = export_format(format)
    path = check_export_request(path, format)
    if model.preprocessor.pending:
        raise ConfigError(
            f"the model's preprocessing ({model.preprocessor.scaling!r}) has not seen training "
            "data yet: fit the model, or call model.adapt(train_data), before exporting it"
        )
    pixel_dtype = export_pixel_type(model, pixel_dtype)
    served = float32_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    difference, aside = None, None
    # Tracing feeds placeholder specs, and the check feeds the export's pixel type (already
    # warned about above if it is not the training type): no pixel-type warnings meanwhile.
    with served.preprocessor.pixel_checks_off(), atomic_path(path) as temporary:
        _WRITERS[format](_Serving(served), temporary, _specs(served, pixel_dtype),
                         export_metadata(served, pixel_dtype))  # fmt: skip
        if check:
            difference = check_export(served, temporary, pixel_dtype)
        if path.is_dir():  # an earlier SavedModel (check_export_path allows no other folder)
            aside = temporary_name(path)
            os.replace(path, aside)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    if verbose:
        print(f"Wrote {path} ({FORMAT_NAMES[format]})")
    return ExportSummary(path, format, pixel_dtype, difference, served is not model)
