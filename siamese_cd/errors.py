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


class GeoreferenceError(ImageReadError):
    """The two dates of a scene lie on different ground grids (CRS or transform), so their
    pixels cannot be compared; the message names both files and what differs."""


class ConfigError(SiameseCDError, ValueError):
    """A model, loss or training option is out of range."""


class TrainingError(SiameseCDError, RuntimeError):
    """Training could not go on, e.g. the loss became NaN; the message says what to change."""


class FileWriteError(SiameseCDError, OSError):
    """A file could not be written (e.g. no space left on the device); the message names the
    file and the cause, and the previous version of the file is unchanged."""


class ModelFileError(SiameseCDError, ValueError):
    """A file given as a model is not a loadable change model: missing, a folder, another kind
    of file, a damaged archive, or a Keras model of another class; the message names the file
    and what it is."""


class ExportError(ConfigError):
    """A model cannot be exported, or an exported model run, as asked: an unknown format, an
    output name that does not fit the format, a converter or runtime that is not installed
    (``pip install 'siamese_cd[export]'``), or an exported file that does not predict as the
    Keras model does; the message names the file and the problem."""


class CheckpointError(SiameseCDError, ValueError):
    """A PyTorch checkpoint cannot be read, or does not hold the published network asked
    for; the message names the file and every missing, unexpected or mis-shaped key."""


class PixelTypeWarning(UserWarning):
    """A model is given pixels of another stored type than it was trained on (e.g. uint16 to
    a model trained on uint8), so its preprocessing scales them differently from training."""


class RunFolderError(ConfigError):
    """A training's log folder holds a finished run, or a backup made with other settings;
    the message names the folder and the flag that decides (``--overwrite``)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the message says what was kept and how to resume.

    A `KeyboardInterrupt`, so code that stops on Ctrl-C still does; the command line prints
    the message and exits with status 130.
    """
