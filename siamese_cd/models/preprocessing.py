"""`ChangePreprocessor`: the one place where pixels are scaled, saved inside the model.

Data reaches the model as the files store it (uint8, uint16 or float). The preprocessor turns
those raw pixels into the network's input in one of two ways:

- ``"unit"``: divide by the maximum of the pixel type (uint8 by 255, uint16 by 65535; floats
  pass unchanged). Right for 8-bit imagery, whose values span the type.
- ``"standardize"``: ``(pixel - mean) / std`` per band, with statistics measured on the
  training data (`keras.layers.Normalization`). Right for 16-bit reflectances and floats,
  which a division by 65535 would squeeze into a sliver of [0, 1].
- ``"auto"`` chooses when it first sees training data: ``"unit"`` for uint8 pixels,
  ``"standardize"`` otherwise.

Because the layer and its statistics are saved in `.keras` files and in the SavedModel
export, a served model scales pixels exactly as the trained one did.

Example:
    >>> import numpy as np
    >>> layer = ChangePreprocessor("standardize", in_channels=2)
    >>> pixels = np.array([[[[1000, 10], [3000, 30]]]], np.uint16)  # (1, 1, 2, 2)
    >>> layer.adapt(pixels)
    >>> layer.mean.tolist(), layer.variance.tolist()
    ([2000.0, 20.0], [1000000.0, 100.0])
    >>> np.asarray(layer(pixels)).round(3).tolist()
    [[[[-1.0, -1.0], [1.0, 1.0]]]]
    >>> unit = ChangePreprocessor("unit")(np.full((1, 1, 1, 3), 51, np.uint8))
    >>> [round(float(v), 3) for v in np.ravel(unit)]
    [0.2, 0.2, 0.2]
"""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np
from keras import ops
from tqdm.auto import tqdm

from siamese_cd.data.decoding import pixel_scale
from siamese_cd.errors import ConfigError, DatasetError

SCALINGS = ("auto", "unit", "standardize")
# The maximum of each integer pixel type that "unit" divides by.
PIXEL_MAXIMUM = {name: pixel_scale(name) for name in ("uint8", "uint16")}


def resolve_scaling(scaling: str, pixel_dtype) -> str:
    """``"auto"`` made concrete for data of `pixel_dtype`; other choices stay as they are.

    Example:
        >>> resolve_scaling("auto", "uint8"), resolve_scaling("auto", "uint16")
        ('unit', 'standardize')
    """
    if scaling != "auto":
        return scaling
    return "unit" if np.dtype(pixel_dtype) == np.uint8 else "standardize"


@keras.saving.register_keras_serializable(package="siamese_cd")
class ChangePreprocessor(keras.layers.Layer):
    """Raw pixels in, network input out: dtype scaling or per-band standardisation.

    Always computes in float32, also under mixed precision, so statistics of 16-bit
    reflectances keep their precision.

    Args:
        scaling: ``"auto"``, ``"unit"`` or ``"standardize"`` (see the module docstring).
        in_channels: bands per image.
        pixel_dtype: the stored pixel type seen in training (``"uint8"``, ``"uint16"``,
            ``"float32"``), recorded by `adapt`; the SavedModel export takes this type.
        mean: per-band means for ``"standardize"``, in raw pixel units; with `variance`
            they replace `adapt`.
        variance: per-band variances for ``"standardize"``.
        **kwargs: `name` or `trainable`, passed to `keras.layers.Layer`.
    """

    def __init__(
        self,
        scaling: str = "auto",
        in_channels: int = 3,
        pixel_dtype: str | None = None,
        mean: list[float] | None = None,
        variance: list[float] | None = None,
        **kwargs,
    ):
        kwargs.pop("dtype", None)  # always float32, whatever the global policy
        super().__init__(dtype="float32", **kwargs)
        if scaling not in SCALINGS:
            raise ConfigError(f"preprocessing must be one of {SCALINGS}, got {scaling!r}")
        if (mean is None) != (variance is None):
            raise ConfigError("give both mean and variance, or neither")
        self.scaling = scaling
        self.in_channels = int(in_channels)
        self.pixel_dtype = None if pixel_dtype is None else np.dtype(pixel_dtype).name
        self.normalization = keras.layers.Normalization(
            axis=-1, dtype="float32", name="standardize"
        )
        self.normalization.build((None, None, None, self.in_channels))
        self.adapted = False
        if mean is not None:
            self._set_statistics(mean, variance)
        self.built = True

    # -- state -----------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """True until the layer knows how to scale (``"auto"``, or unmeasured statistics)."""
        return self.scaling == "auto" or (self.scaling == "standardize" and not self.adapted)

    @property
    def mean(self) -> np.ndarray:
        """Per-band means of ``"standardize"``, in raw pixel units."""
        return np.asarray(self.normalization.adapt_mean, np.float64)

    @property
    def variance(self) -> np.ndarray:
        """Per-band variances of ``"standardize"``, in raw pixel units squared."""
        return np.asarray(self.normalization.adapt_variance, np.float64)

    def _set_statistics(self, mean, variance) -> None:
        mean = np.asarray(mean, np.float32).reshape(-1)
        variance = np.asarray(variance, np.float32).reshape(-1)
        if len(mean) != self.in_channels or len(variance) != self.in_channels:
            raise ConfigError(
                f"mean and variance need one value per band ({self.in_channels}), got "
                f"{len(mean)} and {len(variance)}"
            )
        self.normalization.adapt_mean.assign(mean)
        self.normalization.adapt_variance.assign(variance)
        self.normalization.finalize_state()
        self.adapted = True

    def load_own_variables(self, store) -> None:
        super().load_own_variables(store)
        self.normalization.finalize_state()

    # -- measuring -------------------------------------------------------------------------------

    def adapt(self, data, progress: bool = True) -> None:
        """Choose the scaling for ``"auto"`` and measure statistics for ``"standardize"``.

        Args:
            data: a `PairedImageDataset` (both dates of every scene, read once, whole),
                an array of images (N, H, W, C), a ``(t1, t2)`` tuple of such arrays, or a
                `tf.data.Dataset` of ``((t1, t2), mask)`` batches; raw pixels in every case.
            progress: show a progress bar while reading a dataset.

        Raises:
            DatasetError: if a band is constant over the data (its std would be 0).
        """
        batches = _image_batches(data, progress)
        first = next(batches)
        self.pixel_dtype = np.dtype(first.dtype).name
        self.scaling = resolve_scaling(self.scaling, first.dtype)
        if self.scaling != "standardize":
            return

        def as_float():
            yield first.astype(np.float32)
            for batch in batches:
                yield np.asarray(batch, np.float32)

        self.normalization.adapt(as_float())
        self.normalization.finalize_state()
        flat = np.flatnonzero(self.variance <= 0)
        if len(flat):
            raise DatasetError(
                f"band(s) {(flat + 1).tolist()} are constant over the training data (std 0), "
                "so they cannot be standardised; select other bands (bands=) or use "
                "preprocessing='unit'"
            )
        self.adapted = True

    # -- scaling ---------------------------------------------------------------------------------

    def call(self, images):
        if self.pending:
            raise ConfigError(
                f"the model's preprocessing ({self.scaling!r}) has not seen training data yet: "
                "fit the model, call model.adapt(train_data), or build it with "
                "preprocessing='unit'"
            )
        dtype = keras.backend.standardize_dtype(images.dtype)
        if "int" in dtype and dtype not in PIXEL_MAXIMUM:
            raise ConfigError(f"integer pixels must be uint8 or uint16, got {dtype}")
        pixels = ops.cast(images, "float32")
        if self.scaling == "standardize":
            return self.normalization(pixels)
        return pixels / PIXEL_MAXIMUM[dtype] if dtype in PIXEL_MAXIMUM else pixels

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = {
            **super().get_config(),
            "scaling": self.scaling,
            "in_channels": self.in_channels,
            "pixel_dtype": self.pixel_dtype,
        }
        if self.scaling == "standardize" and self.adapted:
            config["mean"] = self.mean.tolist()
            config["variance"] = self.variance.tolist()
        return config


def _image_batches(data, progress: bool) -> Iterator[np.ndarray]:
    """Raw image batches (N, H, W, C) of both dates from any input `adapt` takes."""
    if hasattr(data, "read_pair") and hasattr(data, "pairs"):  # a PairedImageDataset
        for i in tqdm(
            range(len(data.pairs)),
            desc="Measuring band statistics",
            unit="pair",
            disable=not progress,
        ):
            t1, t2, _ = data.read_pair(i)
            yield np.stack([t1, t2])
        return
    if isinstance(data, (tuple, list)):
        for part in data:
            yield from _image_batches(part, progress)
        return
    if hasattr(data, "element_spec"):  # a tf.data.Dataset of ((t1, t2), mask) batches
        for element in data.as_numpy_iterator():
            yield from _image_batches(element[0], progress)
        return
    yield np.asarray(data)


def preprocessing_config(data, scaling: str = "auto", progress: bool = True) -> dict:
    """Measure once, build many: the preprocessor config for `data`, ready for a model.

    ``SiameseChangeModel(..., preprocessing=preprocessing_config(train))`` builds a model
    whose preprocessing is already set, without another pass over the data (the tuner
    builds every trial this way).

    Example:
        >>> import numpy as np
        >>> config = preprocessing_config(np.zeros((1, 4, 4, 3), np.uint8))
        >>> config["scaling"], config["pixel_dtype"]
        ('unit', 'uint8')
    """
    channels = int(_channels_of(data))
    layer = ChangePreprocessor(scaling, in_channels=channels)
    layer.adapt(data, progress=progress)
    return layer.get_config()


def _channels_of(data) -> int:
    if hasattr(data, "channels"):
        return data.channels
    if isinstance(data, (tuple, list)):
        return _channels_of(data[0])
    if hasattr(data, "element_spec"):
        return data.element_spec[0][0].shape[-1]
    return np.shape(data)[-1]
