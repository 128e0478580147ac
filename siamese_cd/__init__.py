"""siamese_cd: Keras change detection for pairs of co-registered images."""

from siamese_cd.data.augment import Augment
from siamese_cd.data.check import check_dataset
from siamese_cd.data.dataset import PairedImageDataset
from siamese_cd.errors import (
    ConfigError,
    DatasetError,
    ImageReadError,
    PairingError,
    SiameseCDError,
    TrainingError,
)
from siamese_cd.evaluation import Evaluation, evaluate
from siamese_cd.inference import predict_files, predict_scene
from siamese_cd.losses import (
    DiceLoss,
    FocalLoss,
    SumOfLosses,
    WeightedBinaryCrossentropy,
    get_loss,
)
from siamese_cd.metrics import ChangeMetrics
from siamese_cd.models.siamese import SiameseChangeModel

__version__ = "0.1.0"

__all__ = [
    "Augment",
    "ChangeMetrics",
    "ConfigError",
    "DatasetError",
    "DiceLoss",
    "Evaluation",
    "FocalLoss",
    "ImageReadError",
    "PairedImageDataset",
    "PairingError",
    "SiameseCDError",
    "SiameseChangeModel",
    "SumOfLosses",
    "TrainingError",
    "WeightedBinaryCrossentropy",
    "check_dataset",
    "evaluate",
    "get_loss",
    "predict_files",
    "predict_scene",
]
