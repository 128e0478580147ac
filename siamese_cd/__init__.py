"""siamese_cd: Keras change detection for pairs of co-registered images.

Names are imported on first use (PEP 562), so that ``import siamese_cd`` and the command
line's ``--help`` do not pay for TensorFlow. Saved models still load after ``import siamese_cd``
alone, as with ``import keras_hub``: the package's Keras objects (model, backbone, preprocessing
layer, losses, metrics, learning-rate schedule) are registered as soon as Keras is imported,
before or after this package.

Example:
    >>> import siamese_cd
    >>> siamese_cd.SiameseChangeModel.__name__
    'SiameseChangeModel'
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS = {
    "Augment": "siamese_cd.data.sampling.augment",
    "ChangeMetrics": "siamese_cd.models.metrics",
    "ChangePreprocessor": "siamese_cd.models.preprocessing",
    "ConfigError": "siamese_cd.errors",
    "DatasetError": "siamese_cd.errors",
    "DiceLoss": "siamese_cd.models.losses",
    "Evaluation": "siamese_cd.evaluation.scores",
    "ExportError": "siamese_cd.errors",
    "FCSiamBackbone": "siamese_cd.models.backbone",
    "FileWriteError": "siamese_cd.errors",
    "FocalLoss": "siamese_cd.models.losses",
    "GeoreferenceError": "siamese_cd.errors",
    "ImageReadError": "siamese_cd.errors",
    "MaskImageLogger": "siamese_cd.callbacks",
    "ModelFileError": "siamese_cd.errors",
    "NonFiniteError": "siamese_cd.errors",
    "PairedImageDataset": "siamese_cd.data.pipeline.dataset",
    "PairingError": "siamese_cd.errors",
    "PixelTypeWarning": "siamese_cd.errors",
    "RunFolderError": "siamese_cd.errors",
    "SiameseCDError": "siamese_cd.errors",
    "SiameseChangeModel": "siamese_cd.models.siamese",
    "SumOfLosses": "siamese_cd.models.losses",
    "TrainSettings": "siamese_cd.training.settings",
    "TrainingError": "siamese_cd.errors",
    "TrainingInterrupted": "siamese_cd.errors",
    "WeightedBinaryCrossentropy": "siamese_cd.models.losses",
    "change_fraction": "siamese_cd.data.pipeline.stats",
    "check_dataset": "siamese_cd.data.check",
    "choose_threshold": "siamese_cd.evaluation.threshold",
    "evaluate": "siamese_cd.evaluation.scores",
    "get_loss": "siamese_cd.models.losses",
    "load_change_model": "siamese_cd.models.loading",
    "make_synthetic_dataset": "siamese_cd.data.synthetic.generate",
    "predict_files": "siamese_cd.evaluation.inference",
    "predict_scene": "siamese_cd.evaluation.inference",
    "preprocessing_config": "siamese_cd.models.preprocessing",
    "train_on_folder": "siamese_cd.training.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'siamese_cd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


# Importing these registers every object a saved model refers to with Keras's serialisation.
_SAVEABLE_MODULES = (
    "siamese_cd.models.siamese",
    "siamese_cd.models.backbone",
    "siamese_cd.models.blocks",
    "siamese_cd.models.preprocessing",
    "siamese_cd.models.recipe",
    "siamese_cd.models.losses",
    "siamese_cd.models.metrics",
)
# Imports after whose completion the registration is tried: Keras itself, TensorFlow (which may
# import Keras while it is being imported) and this package's modules (which may import Keras
# first, before the modules the registration needs are complete).
_WATCHED = ("keras", "tensorflow", f"{__name__}.")


def _initializing(name: str, finished: str) -> bool:
    """Whether module `name` is half-imported (its import is still running), ignoring `finished`."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return name != finished and bool(getattr(spec, "_initializing", False))


def _register_when_ready(finished: str = "") -> None:
    """Import the saveable modules once Keras is whole and no watched import is half-done."""
    if "keras" not in sys.modules or any(
        _initializing(name, finished)
        for name in list(sys.modules)
        if name in _WATCHED[:2] or name.startswith(_WATCHED[2])
    ):
        return  # retried when the import in progress finishes
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
    for module in _SAVEABLE_MODULES:
        importlib.import_module(module)


class _ThenRegister(importlib.abc.Loader):
    """A loader that runs the module's own loader, then tries the registration."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        # The module sees its own loader, so resource look-ups through it are unchanged.
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _register_when_ready(finished=module.__name__)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Wraps the loaders of the watched imports so the registration follows them."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in _WATCHED[:2] and not fullname.startswith(_WATCHED[2]):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenRegister(spec.loader)
                return spec
        return None


_HOOK = _RegisterAfterKeras()
if "keras" in sys.modules:
    _register_when_ready()
else:
    sys.meta_path.insert(0, _HOOK)
