"""Exported change models run by their own runtimes, as `predict_scene` runs a Keras one.

``siamese-cd export`` (`siamese_cd.evaluation.export`) writes a model as an ONNX file, a
LiteRT (``.tflite``) file or a SavedModel folder. The classes here open such a file with the
format's runtime (onnxruntime, the LiteRT interpreter, TensorFlow) and give it the interface
the window loop of `siamese_cd.evaluation.inference` uses, so that tiling, blending, test-time
augmentation, GeoTIFF output and folders of scenes work with an exported model unchanged:

- ``predict_on_batch((t1, t2))``: the (B, H, W, 1) float32 change probability of a batch;
  ``predict((t1, t2))`` gives both outputs, ``probability`` and the uint8 ``mask``;
- ``threshold``: the decision threshold the model was exported with (its metadata);
- ``in_channels`` and ``input_dtype``: the bands and the pixel type of the file's inputs.

`open_change_model` is the loader of ``siamese-cd predict``: an exported model by its suffix
(``.onnx``, ``.tflite``) or, for a folder, its ``assets.extra/siamese_cd.json``; a ``.keras``
file otherwise (`siamese_cd.models.loading.load_change_model`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from siamese_cd.errors import ConfigError, ExportError, ModelFileError
from siamese_cd.models.loading import load_change_model

EXTRA_HINT = "pip install 'siamese_cd[export]'"
# Where the exporter records the threshold and pixel type: an ONNX metadata property, a LiteRT
# metadata entry, and a file beside a SavedModel (``assets.extra`` is the SavedModel folder's
# place for files TensorFlow does not read).
METADATA_KEY = "siamese_cd"
SAVED_MODEL_METADATA = Path("assets.extra") / "siamese_cd.json"
FILE_FORMATS = {".onnx": "onnx", ".tflite": "litert"}
FORMAT_NAMES = {"onnx": "ONNX", "litert": "LiteRT", "saved_model": "SavedModel"}
_ONNX_TYPES = {"tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(float)": "float32"}


def installed(module: str) -> bool:
    """Whether the Python module `module` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def require_modules(modules: Sequence[str], doing: str) -> None:
    """Raise `ExportError` naming the extra to install if any of `modules` is missing.

    Args:
        modules: importable module names, e.g. ``("onnxruntime",)``.
        doing: what needs them, e.g. ``"running an ONNX model"``.
    """
    missing = [name for name in modules if not installed(name)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ExportError(
            f"{doing} needs {', '.join(missing)}, which {verb} not installed: {EXTRA_HINT}"
        )


def _cpu_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _parse_metadata(text: str | bytes | None, path: Path, kind: str) -> dict:
    """The exporter's metadata, or a `ModelFileError` saying the file is not one of ours."""
    try:
        metadata = json.loads(text) if text else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        metadata = None
    if not isinstance(metadata, dict) or "threshold" not in metadata:
        raise ModelFileError(
            f"{path}: {kind} not written by siamese-cd export (it records no decision "
            "threshold); export the .keras model with siamese-cd export"
        )
    return metadata


class ExportedChangeModel:
    """An exported change model behind the interface of the window loop (module docstring).

    Subclasses open the file and implement ``_run(t1, t2) -> {"probability", "mask"}``.
    """

    format = ""

    def __init__(self, path: Path, metadata: dict, input_dtype: str, in_channels: int):
        self.path = Path(path)
        self.name = str(path)
        self.metadata = metadata
        self.threshold = float(metadata["threshold"])
        self.input_dtype = np.dtype(input_dtype).name
        self.in_channels = int(in_channels)

    def pixel_type_problem(self, dtype) -> str | None:
        """Why pixels of `dtype` cannot be given to this model; None if they can (its own
        type, or any float type for a float model: they are cast)."""
        dtype = np.dtype(dtype)
        if dtype == self.input_dtype or (dtype.kind == "f" and "float" in self.input_dtype):
            return None
        return (
            f"{dtype.name} pixels, but the exported model {self.path.name} takes "
            f"{self.input_dtype} pixels (the type it was exported for, normally the training "
            f"data's); give it {self.input_dtype} images, or export the .keras model again "
            f"with --pixel-type {dtype.name}"
        )

    def _as_input(self, batch) -> np.ndarray:
        batch = np.asarray(batch)
        problem = self.pixel_type_problem(batch.dtype)
        if problem is not None:
            raise ConfigError(f"{self.path}: given {problem}")
        return np.ascontiguousarray(batch, dtype=self.input_dtype)

    def predict(self, inputs) -> dict[str, np.ndarray]:
        """Both outputs for a batch ``(t1, t2)``, each (B, H, W, in_channels): ``probability``
        (B, H, W, 1) float32 and ``mask`` (B, H, W, 1) uint8, 1 where the probability reaches
        `threshold`."""
        t1, t2 = (self._as_input(x) for x in inputs)
        return self._run(t1, t2)

    def predict_on_batch(self, inputs) -> np.ndarray:
        """The (B, H, W, 1) float32 change probability of a batch ``(t1, t2)``."""
        return self.predict(inputs)["probability"]

    def _run(self, t1: np.ndarray, t2: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"


def _check_names(path: Path, kind: str, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    if sorted(inputs) != ["t1", "t2"] or not {"probability", "mask"} <= set(outputs):
        raise ModelFileError(
            f"{path}: a {kind} model with inputs {sorted(inputs)} and outputs "
            f"{sorted(outputs)}, not a change model written by siamese-cd export (inputs t1 "
            "and t2, outputs probability and mask)"
        )


class OnnxChangeModel(ExportedChangeModel):
    """An ONNX file written by ``siamese-cd export --format onnx``, run by onnxruntime on the
    CPU with every core."""

    format = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        require_modules(("onnxruntime",), "running an ONNX model")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or _cpu_threads()
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own classes for unreadable files
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ModelFileError(f"{path}: not a readable ONNX model ({first})") from None
        inputs = {spec.name: spec for spec in self._session.get_inputs()}
        outputs = [spec.name for spec in self._session.get_outputs()]
        _check_names(path, "ONNX", list(inputs), outputs)
        metadata = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        spec = inputs["t1"]
        if spec.type not in _ONNX_TYPES:
            raise ModelFileError(f"{path}: inputs of type {spec.type}, not uint8, uint16 or float")
        metadata = _parse_metadata(metadata, path, "an ONNX model")
        super().__init__(path, metadata, _ONNX_TYPES[spec.type], spec.shape[-1])

    def _run(self, t1: np.ndarray, t2: np.ndarray) -> dict[str, np.ndarray]:
        probability, mask = self._session.run(["probability", "mask"], {"t1": t1, "t2": t2})
        return {"probability": probability, "mask": mask}


def litert_metadata(content: bytes) -> bytes | None:
    """The exporter's metadata entry of a LiteRT flatbuffer (`METADATA_KEY`); None if absent."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode() == METADATA_KEY:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


class LiteRTChangeModel(ExportedChangeModel):
    """A ``.tflite`` file written by ``siamese-cd export --format litert``, run by the LiteRT
    interpreter with every core; its inputs are resized to each batch's shape."""

    format = "litert"

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        require_modules(("ai_edge_litert",), "running a LiteRT model")
        from ai_edge_litert.interpreter import Interpreter

        content = path.read_bytes()
        if content[4:8] != b"TFL3":  # the flatbuffer's file identifier
            raise ModelFileError(f"{path}: not a LiteRT (.tflite) model file")
        try:
            interpreter = Interpreter(model_content=content, num_threads=threads or _cpu_threads())
            self._runner = interpreter.get_signature_runner()
        except Exception as error:  # the interpreter raises ValueError and RuntimeError alike
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ModelFileError(f"{path}: not a runnable LiteRT model ({first})") from None
        inputs = self._runner.get_input_details()
        outputs = self._runner.get_output_details()
        _check_names(path, "LiteRT", list(inputs), list(outputs))
        spec = inputs["t1"]
        super().__init__(
            path,
            _parse_metadata(litert_metadata(content), path, "a LiteRT model"),
            np.dtype(spec["dtype"]).name,
            spec["shape_signature"][-1],
        )
        self._warm_up()

    def _warm_up(self) -> None:
        """Run a small batch once, so the interpreter applies its CPU delegate (XNNPACK) now.

        Applying it prints an INFO line to the process's standard error, which LiteRT has no
        setting for; it is silenced here rather than appearing amid a progress bar. Errors
        still raise.
        """
        from siamese_cd.cli.quiet import stderr_silenced

        side = 2 * 2 ** int(self.metadata.get("depth") or 4)
        pixels = np.zeros((1, side, side, self.in_channels), self.input_dtype)
        with stderr_silenced():
            self._run(pixels, pixels)

    def _run(self, t1: np.ndarray, t2: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._runner(t1=t1, t2=t2)
        return {"probability": outputs["probability"], "mask": outputs["mask"]}


class SavedModelChangeModel(ExportedChangeModel):
    """A SavedModel folder written by ``siamese-cd export --format saved_model``, run by
    TensorFlow through its ``serve(t1, t2)`` endpoint."""

    format = "saved_model"

    def __init__(self, path: str | Path):
        import tensorflow as tf

        path = Path(path)
        metadata = _parse_metadata((path / SAVED_MODEL_METADATA).read_bytes(), path, "a SavedModel")
        try:
            self._served = tf.saved_model.load(str(path))
            signature = self._served.signatures["serving_default"]
        except Exception as error:  # TensorFlow's loading errors are long; the first line says
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ModelFileError(f"{path}: not a loadable SavedModel ({first})") from None
        inputs = signature.structured_input_signature[1]
        _check_names(path, "SavedModel", list(inputs), list(signature.structured_outputs))
        spec = inputs["t1"]
        super().__init__(path, metadata, spec.dtype.name, spec.shape[-1])

    def _run(self, t1: np.ndarray, t2: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._served.serve(t1, t2)
        return {"probability": outputs["probability"].numpy(), "mask": outputs["mask"].numpy()}


def exported_format(path: str | Path) -> str | None:
    """The export format of `path` (``"onnx"``, ``"litert"`` or ``"saved_model"``) by its
    suffix, or for a folder by the exporter's metadata file; None for anything else."""
    path = Path(path)
    if path.is_dir():
        found = (path / "saved_model.pb").is_file() and (path / SAVED_MODEL_METADATA).is_file()
        return "saved_model" if found else None
    return FILE_FORMATS.get(path.suffix.lower())


def load_exported_model(path: str | Path) -> ExportedChangeModel:
    """Open an exported change model with its format's runtime.

    Raises:
        ModelFileError: the path is missing, not an exported model, or not one written by
            ``siamese-cd export`` (no recorded threshold, other inputs or outputs).
        ExportError: the format's runtime is not installed (``pip install
            'siamese_cd[export]'``).
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    kind = exported_format(path)
    if kind == "onnx":
        return OnnxChangeModel(path)
    if kind == "litert":
        return LiteRTChangeModel(path)
    if kind == "saved_model":
        return SavedModelChangeModel(path)
    raise ModelFileError(
        f"{path}: not an exported change model (.onnx, .tflite, or a SavedModel folder "
        "written by siamese-cd export)"
    )


def open_change_model(path: str | Path):
    """The model at `path` for prediction: an exported one (`load_exported_model`) or a
    ``.keras`` file (`siamese_cd.models.loading.load_change_model`).

    Raises:
        ModelFileError: the path is not a loadable change model of either kind (named).
        ExportError: an exported model whose runtime is not installed.
    """
    if exported_format(path) is not None:
        return load_exported_model(path)
    return load_change_model(path)
