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
- ``"per_image"``: each image on its own, ``(I - mean(I)) / std(I)`` with one mean and std
  over all its pixels and bands, as the published notebook standardises every image it
  reads (`standardize_each_image`). Needs no statistics and ignores the pixel type.
- ``"per_image_band"``: the same per band of each image.

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

import contextlib
import warnings
from collections.abc import Iterator

import keras
import numpy as np
from keras import ops
from tqdm.auto import tqdm

from siamese_cd.data.readers.decoding import pixel_scale
from siamese_cd.errors import ConfigError, DatasetError, PixelTypeWarning
from siamese_cd.hints import option_hint

#: The model's scaling unless told: each image standardised on its own, as the published code
#: does (the recipe ablation found per-dataset scaling worse, docs/model.md).
DEFAULT_SCALING = "per_image"
SCALINGS = ("auto", "unit", "standardize", "per_image", "per_image_band")
# Scalings that measure each image itself; the pixel type does not matter to them.
PER_IMAGE = ("per_image", "per_image_band")
# The smallest std an image (or band) is divided by: a constant one becomes zeros, not NaN.
PER_IMAGE_MIN_STD = 1e-6
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


def standardize_each_image(pixels, per_band: bool = False):
    """``(I - mean) / std`` of each image of a batch (B, H, W, C), over H, W and the bands
    (or per band with `per_band`); population std, at least `PER_IMAGE_MIN_STD`.

    Example:
        >>> x = np.array([[[[1.0, 10.0], [3.0, 30.0]]]])  # (1, 1, 2, 2)
        >>> np.asarray(standardize_each_image(x, per_band=True)).round(3).tolist()
        [[[[-1.0, -1.0], [1.0, 1.0]]]]
    """
    axes = (1, 2) if per_band else (1, 2, 3)
    mean, variance = ops.moments(pixels, axes=axes, keepdims=True)
    return (pixels - mean) / ops.maximum(ops.sqrt(variance), PER_IMAGE_MIN_STD)


def _unit_scaling(dtype: str, past: bool = False) -> str:
    """What ``"unit"`` does (or did, `past`) to pixels of `dtype`, in words."""
    if dtype in PIXEL_MAXIMUM:
        return f"{'divided' if past else 'divides'} {dtype} pixels by {PIXEL_MAXIMUM[dtype]:g}"
    return f"{'passed' if past else 'passes'} {dtype} pixels unscaled"


def served_type_problem(scaling: str, trained: str | None, served: str) -> str | None:
    """Why pixels of type `served` do not suit a model trained on `trained` pixels; None if
    they do (the same type, two float types, or an unknown training type).

    Example:
        >>> print(served_type_problem("unit", "uint8", "uint16"))  # doctest: +NORMALIZE_WHITESPACE
        the model was trained on uint8 pixels and is given uint16 pixels: its 'unit'
        preprocessing divides uint16 pixels by 65535 (in training it divided uint8 pixels by
        255), so the network sees values on another scale than it learned and the change map
        is unreliable; give it uint8 pixels, or train a model on uint16 data
        >>> served_type_problem("unit", "uint8", "uint8") is None
        True
    """
    if trained is None or trained == served or ("float" in trained and "float" in served):
        return None
    if scaling in PER_IMAGE:  # each image is measured on its own, whatever its type
        return None
    if scaling == "standardize":
        scaled = (
            "its 'standardize' preprocessing subtracts per-band means and divides by standard "
            f"deviations measured on {trained} pixels, which fit {served} pixels only if they "
            "hold the same values"
        )
    else:
        scaled = (
            f"its {scaling!r} preprocessing {_unit_scaling(served)} (in training it "
            f"{_unit_scaling(trained, past=True)}), "
            "so the network sees values on another scale than it learned and the change map "
            "is unreliable"
        )
    return (
        f"the model was trained on {trained} pixels and is given {served} pixels: {scaled}; "
        f"give it {trained} pixels, or train a model on {served} data"
    )


def check_served_pixels(model, dtype) -> None:
    """`ChangePreprocessor.check_pixel_type` of `model`'s preprocessor, if it has one."""
    preprocessor = getattr(model, "preprocessor", None)
    if dtype is not None and isinstance(preprocessor, ChangePreprocessor):
        preprocessor.check_pixel_type(dtype)


def stored_pixel_dtype(data) -> str | None:
    """The stored pixel type of training data (any input `ChangePreprocessor.adapt` takes),
    from its type information, reading no pixels; None if the data does not tell.

    Example:
        >>> stored_pixel_dtype((np.zeros((1, 4, 4, 3), np.uint16), np.zeros((1, 4, 4, 3))))
        'uint16'
    """
    source = getattr(data, "source", None)
    if source is not None and hasattr(data, "read_pair"):  # a PairedImageDataset
        return np.dtype(source.dtype).name  # the files' type, also under float augmentation
    if isinstance(data, (tuple, list)):
        return stored_pixel_dtype(data[0]) if data else None
    spec = getattr(data, "element_spec", None)
    if spec is not None:  # a tf.data.Dataset of ((t1, t2), mask)
        try:
            return np.dtype(spec[0][0].dtype.as_numpy_dtype).name
        except (TypeError, IndexError, AttributeError):
            return None
    dtype = getattr(data, "dtype", None)
    return None if dtype is None else np.dtype(dtype).name


@keras.saving.register_keras_serializable(package="siamese_cd")
class ChangePreprocessor(keras.layers.Layer):
    """Raw pixels in, network input out: dtype scaling or per-band standardisation.

    Always computes in float32, also under mixed precision, so statistics of 16-bit
    reflectances keep their precision.

    Args:
        scaling: ``"auto"``, ``"unit"``, ``"standardize"``, ``"per_image"`` or
            ``"per_image_band"`` (see the module docstring).
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
        self._warned_types: tuple[str, ...] = ()  # served pixel types already warned about
        self._checking = True  # off while an export traces the layer (`pixel_checks_off`)
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
            unit = option_hint("preprocessing='unit'", "--preprocessing unit")
            raise DatasetError(
                f"band(s) {(flat + 1).tolist()} are constant over the training data (std 0), "
                "so they cannot be standardised; select other bands "
                f"({option_hint('bands=', '--bands')}) or scale by the pixel type's maximum "
                f"({unit})"
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
        if not isinstance(images, keras.KerasTensor):  # real data, not a shape inference
            self.check_pixel_type(dtype)
        pixels = ops.cast(images, "float32")
        if self.scaling == "standardize":
            # Normalization's own arithmetic, on its variables rather than the eager tensors
            # it caches: a traced graph then reads weights, which every exporter freezes,
            # where captured tensors become unfed inputs of the ONNX export.
            norm = self.normalization
            spread = ops.maximum(ops.sqrt(norm.adapt_variance), keras.backend.epsilon())
            return (pixels - norm.adapt_mean) / spread
        if self.scaling in PER_IMAGE:
            return standardize_each_image(pixels, per_band=self.scaling == "per_image_band")
        return pixels / PIXEL_MAXIMUM[dtype] if dtype in PIXEL_MAXIMUM else pixels

    def check_pixel_type(self, dtype) -> None:
        """Warn (`PixelTypeWarning`), once per type, if pixels of `dtype` are not of the type
        seen in training (`served_type_problem`); nothing if the training type is unknown.

        Every path (`predict_scene`, `evaluate`, `model.predict`, `fit`) calls the layer,
        which calls this as a compiled step is traced (once per input type); tools with a
        progress bar call it first, so the warning is not printed inside the bar."""
        if not self._checking:
            return
        dtype = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        problem = served_type_problem(self.scaling, self.pixel_dtype, dtype)
        if problem is None or dtype in self._warned_types:
            return
        self._warned_types = (*self._warned_types, dtype)
        warnings.warn(problem, PixelTypeWarning, stacklevel=3)

    @contextlib.contextmanager
    def pixel_checks_off(self) -> Iterator[None]:
        """No `check_pixel_type` within the block (e.g. while an export traces the layer with
        placeholder specs rather than served pixels)."""
        previous, self._checking = self._checking, False
        try:
            yield
        finally:
            self._checking = previous

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


def make_preprocessor(
    preprocessor: ChangePreprocessor | None, spec: str | dict | None, in_channels: int
) -> ChangePreprocessor:
    """The preprocessor of a `SiameseChangeModel` taking `in_channels` bands.

    Args:
        preprocessor: a `ChangePreprocessor` (the model's ``preprocessor=``), or None.
        spec: the model's ``preprocessing=``: a scaling name, a `preprocessing_config`, or
            None (`DEFAULT_SCALING`); only without `preprocessor`.
        in_channels: the bands the backbone takes.

    Raises:
        ConfigError: both or neither fitting, or a band count other than the backbone's.
    """
    if preprocessor is not None:
        if spec is not None:
            raise ConfigError("give preprocessor= or preprocessing=, not both")
        if not isinstance(preprocessor, ChangePreprocessor):
            raise ConfigError(
                f"preprocessor must be a ChangePreprocessor, got {type(preprocessor).__name__}"
            )
        if preprocessor.in_channels != in_channels:
            raise ConfigError(
                f"the preprocessor takes {preprocessor.in_channels} band(s), the backbone "
                f"in_channels={in_channels}"
            )
        return preprocessor
    spec = DEFAULT_SCALING if spec is None else spec
    if isinstance(spec, str):
        return ChangePreprocessor(spec, in_channels=in_channels, name="preprocessor")
    if isinstance(spec, dict):
        config = {**spec, "name": "preprocessor"}
        if config.setdefault("in_channels", in_channels) != in_channels:
            raise ConfigError(
                f"the preprocessing was measured on {config['in_channels']} band(s), "
                f"the model takes in_channels={in_channels}"
            )
        return ChangePreprocessor.from_config(config)
    raise ConfigError(
        f"preprocessing must be one of {SCALINGS} or a preprocessor config dict, got {spec!r}"
    )


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
