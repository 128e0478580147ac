"""siamese_cd: Keras change detection for pairs of co-registered images."""

from siamese_cd.data.augment import Augment
from siamese_cd.data.dataset import PairedImageDataset
from siamese_cd.errors import (
    ConfigError,
    DatasetError,
    ImageReadError,
    PairingError,
    SiameseCDError,
)
from siamese_cd.losses import WeightedBinaryCrossentropy
from siamese_cd.metrics import ChangeMetrics
from siamese_cd.models.siamese import SiameseChangeModel

__version__ = "0.1.0"

__all__ = [
    "Augment",
    "ChangeMetrics",
    "ConfigError",
    "DatasetError",
    "ImageReadError",
    "PairedImageDataset",
    "PairingError",
    "SiameseCDError",
    "SiameseChangeModel",
    "WeightedBinaryCrossentropy",
]
