"""siamese_cd: Keras change detection for pairs of co-registered images.

Names are imported on first use (PEP 562), so that ``import siamese_cd`` and the command
line's ``--help`` do not pay for TensorFlow.

Example:
    >>> import siamese_cd
    >>> siamese_cd.SiameseChangeModel.__name__
    'SiameseChangeModel'
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS = {
    "Augment": "siamese_cd.data.augment",
    "ChangeMetrics": "siamese_cd.metrics",
    "ChangePreprocessor": "siamese_cd.models.preprocessing",
    "ConfigError": "siamese_cd.errors",
    "DatasetError": "siamese_cd.errors",
    "DiceLoss": "siamese_cd.losses",
    "Evaluation": "siamese_cd.evaluation",
    "FCSiamBackbone": "siamese_cd.models.backbone",
    "FocalLoss": "siamese_cd.losses",
    "ImageReadError": "siamese_cd.errors",
    "PairedImageDataset": "siamese_cd.data.dataset",
    "PairingError": "siamese_cd.errors",
    "SiameseCDError": "siamese_cd.errors",
    "SiameseChangeModel": "siamese_cd.models.siamese",
    "SumOfLosses": "siamese_cd.losses",
    "TrainingError": "siamese_cd.errors",
    "WeightedBinaryCrossentropy": "siamese_cd.losses",
    "change_fraction": "siamese_cd.data.stats",
    "check_dataset": "siamese_cd.data.check",
    "evaluate": "siamese_cd.evaluation",
    "get_loss": "siamese_cd.losses",
    "predict_files": "siamese_cd.inference",
    "predict_scene": "siamese_cd.inference",
    "preprocessing_config": "siamese_cd.models.preprocessing",
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
