"""Typed exceptions, so callers can tell bad data from bad configuration."""


class SiameseCDError(Exception):
    """Base class of every error raised on purpose by siamese_cd."""


class DatasetError(SiameseCDError, ValueError):
    """A dataset folder, file or option is unusable; the message names the file and the problem."""


class PairingError(DatasetError):
    """Files of a split cannot be matched into (t1, t2, label) triples by name."""


class ImageReadError(DatasetError):
    """An image file cannot be decoded, or its shape does not fit with its pair."""


class NonFiniteError(ImageReadError):
    """An image holds NaN or infinite pixel values; the message names the file."""


class ConfigError(SiameseCDError, ValueError):
    """A model, loss or training option is out of range."""


class TrainingError(SiameseCDError, RuntimeError):
    """Training could not go on, e.g. the loss became NaN; the message says what to change."""


class FileWriteError(SiameseCDError, OSError):
    """A file could not be written (e.g. no space left on the device); the message names the
    file and the cause, and the previous version of the file is unchanged."""
