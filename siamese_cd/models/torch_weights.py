"""Checkpoints of the authors' PyTorch code in a `SiameseChangeModel`, without PyTorch.

The published networks (Daudt et al., ICIP 2018: ``SiamUnet_diff``, ``SiamUnet_conc`` and
``Unet`` for FC-EF, in rcdaudt/fully_convolutional_change_detection) name their weights
``conv11``, ``bn11``, ..., ``conv43``, ``bn43`` (encoder, level then conv), ``upconv4``, ...,
``upconv1`` (the stride-2 transposed convs), ``conv43d``, ``bn43d``, ..., ``conv12d``,
``bn12d`` (decoder) and ``conv11d`` (the 2-class head before ``LogSoftmax``). Their layers
become these Keras ones, in a model built with ``alignment="torch"`` (PyTorch's pixel grid):

- ``Conv2d`` (encoder) → ``Conv2D`` ``enc{level}_{k}_conv``: (out, in, kh, kw) becomes
  (kh, kw, in, out).
- ``ConvTranspose2d(k=3, padding=1)`` (decoder) → ``Conv2D`` ``dec{level}_{k}_conv`` and
  ``head``: (in, out, kh, kw) becomes (kh, kw, in, out), flipped in kh and kw (a stride-1
  transposed conv is the "same" conv with the flipped kernel).
- ``ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)`` → ``Conv2DTranspose``
  ``dec{level}_up``: (in, out, kh, kw) becomes (kh, kw, out, in), on PyTorch's output grid
  (`siamese_cd.models.blocks.TorchUpsampleAlign`).
- ``BatchNorm2d`` weight, bias, running_mean, running_var → gamma, beta, moving_mean,
  moving_variance (momentum 0.1 and eps 1e-5 are Keras's 0.9 and 1e-5).

A decoder level's PyTorch convs count down (``conv43d``, ``conv42d``, ``conv41d``) where the
Keras ones count up (``dec4_1``, ``dec4_2``, ``dec4_3``). ``num_batches_tracked`` is not
needed and is ignored. The 2-class head is kept (softmax of the logits equals
``exp(LogSoftmax)``), or with ``num_classes=1`` folded into one sigmoid channel: since
``softmax(z)[1] = sigmoid(z1 - z0)``, its kernel and bias are the differences of the two.

`to_state_dict` goes the other way.

Example:
    >>> from siamese_cd.models.siamese import SiameseChangeModel
    >>> state = to_state_dict(SiameseChangeModel.paper("diff", in_channels=13, filters=2))
    >>> state["conv43d.weight"].shape  # ConvTranspose2d(16 + 16 -> 16) at width 2
    (32, 16, 3, 3)
    >>> model = model_from_state_dict(state, "diff")
    >>> model.in_channels, model.widths, model.alignment, model.num_classes
    (13, [2, 4, 8, 16], 'torch', 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from siamese_cd.errors import CheckpointError, ConfigError

TORCH_CLASSES = {"diff": "SiamUnet_diff", "conc": "SiamUnet_conc", "ef": "Unet"}
PUBLISHED_WIDTHS = (16, 32, 64, 128)
PUBLISHED_CONVS = (2, 2, 3, 3)
# BatchNorm2d's entries and the Keras variables they fill.
BATCH_NORM_FIELDS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
# Ways a PyTorch array is laid out for its Keras variable (see the module table).
KINDS = ("conv", "flipped", "upconv", "folded", "vector", "folded_vector")
_LISTED = 8  # keys named per problem in an error message


@dataclass(frozen=True)
class Slot:
    """One entry of a state_dict and the Keras variable it fills.

    Attributes:
        key: the PyTorch name, e.g. ``"conv43d.weight"``.
        variable: the model's variable.
        kind: one of `KINDS`: how the array is rearranged (`keras_value`).
        torch_shape: the shape the entry must have.
    """

    key: str
    variable: keras.Variable
    kind: str
    torch_shape: tuple[int, ...]


def as_array(value) -> np.ndarray:
    """A float32 NumPy array from a torch tensor (any device or float type) or an array."""
    if hasattr(value, "detach"):  # a torch tensor, duck-typed: torch is never imported here
        value = value.detach().cpu()
        value = value.float() if hasattr(value, "float") else value
        value = value.numpy()
    return np.asarray(value, dtype=np.float32)


def keras_value(kind: str, array: np.ndarray) -> np.ndarray:
    """The PyTorch `array` laid out for a Keras variable of the given kind."""
    if kind == "conv":  # Conv2d (out, in, kh, kw)
        return array.transpose(2, 3, 1, 0)
    if kind in ("flipped", "folded"):  # ConvTranspose2d stride 1 (in, out, kh, kw)
        kernel = array[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
        return kernel[..., 1:] - kernel[..., :1] if kind == "folded" else kernel
    if kind == "upconv":  # ConvTranspose2d stride 2 (in, out, kh, kw) -> (kh, kw, out, in)
        return array.transpose(2, 3, 1, 0)
    if kind == "folded_vector":
        return array[1:] - array[:1]
    return array


def _torch_shape(kind: str, keras_shape: tuple[int, ...]) -> tuple[int, ...]:
    if kind == "conv":
        kh, kw, cin, cout = keras_shape
        return (cout, cin, kh, kw)
    if kind in ("flipped", "folded"):
        kh, kw, cin, cout = keras_shape
        return (cin, 2 if kind == "folded" else cout, kh, kw)
    if kind == "upconv":
        kh, kw, cout, cin = keras_shape
        return (cin, cout, kh, kw)
    return (2,) if kind == "folded_vector" else tuple(keras_shape)


def _layer_slots(layer, prefix: str, kernel_kind: str) -> list[Slot]:
    """The slots of a conv layer (kernel, bias) or of a BatchNormalization."""
    if isinstance(layer, keras.layers.BatchNormalization):
        pairs = [(field, getattr(layer, name)) for field, name in BATCH_NORM_FIELDS.items()]
        kinds = ["vector"] * 4
    else:
        pairs = [("weight", layer.kernel), ("bias", layer.bias)]
        kinds = [kernel_kind, "folded_vector" if kernel_kind == "folded" else "vector"]
    return [
        Slot(f"{prefix}.{field}", variable, kind, _torch_shape(kind, tuple(variable.shape)))
        for (field, variable), kind in zip(pairs, kinds)
    ]


def torch_slots(model) -> list[Slot]:
    """Every state_dict entry of the published network that `model` holds, with its variable.

    Raises:
        ConfigError: if `model` is not on PyTorch's grid (``alignment="torch"``).
    """
    if getattr(model, "alignment", None) != "torch":
        raise ConfigError(
            "PyTorch weights need the published pixel grid: build the model with "
            "alignment='torch' (SiameseChangeModel.from_torch_state_dict does)"
        )
    backbone = model.backbone
    encoder = backbone.get_layer("encoder")
    slots: list[Slot] = []
    for level, convs in enumerate(backbone.convs, start=1):
        for k in range(1, convs + 1):
            slots += _layer_slots(
                encoder.get_layer(f"enc{level}_{k}_conv"), f"conv{level}{k}", "conv"
            )
            if backbone.batch_norm:
                slots += _layer_slots(encoder.get_layer(f"enc{level}_{k}_bn"), f"bn{level}{k}", "")
    for level in range(backbone.depth, 0, -1):
        slots += _layer_slots(backbone.get_layer(f"dec{level}_up"), f"upconv{level}", "upconv")
        convs = backbone.convs[level - 1]
        for k in range(1, convs + 1 if level > 1 else convs):
            number = f"{level}{convs - k + 1}d"
            slots += _layer_slots(
                backbone.get_layer(f"dec{level}_{k}_conv"), f"conv{number}", "flipped"
            )
            if backbone.batch_norm:
                slots += _layer_slots(backbone.get_layer(f"dec{level}_{k}_bn"), f"bn{number}", "")
    head_kind = "folded" if model.num_classes == 1 else "flipped"
    return slots + _layer_slots(backbone.get_layer("head"), "conv11d", head_kind)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else "")


def _variant_hint(variant: str, state: Mapping, slots: list[Slot]) -> str:
    """Which published class a decoder of the wrong width suggests, or ''."""
    for slot in slots:
        if slot.kind != "flipped" or slot.key not in state or not slot.key.endswith("d.weight"):
            continue
        got, want = np.shape(state[slot.key])[0], slot.torch_shape[0]
        if got != want:
            single = "SiamUnet_diff or Unet (one skip per level)"
            other = "SiamUnet_conc (two skips per level)" if variant != "conc" else single
            return f"; its decoder widths look like {other}: check variant="
    return ""


def check_state_dict(state: Mapping, slots: list[Slot], variant: str, source: str) -> None:
    """Raise `CheckpointError` naming every missing, unexpected and mis-shaped key."""
    expected = {slot.key: slot.torch_shape for slot in slots}
    present = {key for key in state if not key.endswith("num_batches_tracked")}
    missing = [key for key in expected if key not in present]
    unexpected = sorted(present - set(expected))
    misshaped = [
        f"{key} is {tuple(np.shape(state[key]))}, expected {shape}"
        for key, shape in expected.items()
        if key in present and tuple(np.shape(state[key])) != shape
    ]
    if not (missing or unexpected or misshaped):
        return
    problems = [
        f"{label}: {_listed(keys)}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", misshaped),
        )
        if keys
    ]
    hint = _variant_hint(variant, state, slots) if misshaped else ""
    raise CheckpointError(
        f"{source}: not the published {TORCH_CLASSES[variant]} state_dict "
        f"(variant={variant!r}): {'; '.join(problems)}{hint}"
    )


def load_state_dict(model, state_dict: Mapping, source: str = "state_dict") -> None:
    """Put a published network's weights into `model` (built with ``alignment="torch"``).

    Args:
        model: a `SiameseChangeModel` of the checkpoint's variant, bands and widths.
        state_dict: names to torch tensors or NumPy arrays (``net.state_dict()``).
        source: what to call the checkpoint in errors, e.g. its file name.

    Raises:
        CheckpointError: naming every missing, unexpected or mis-shaped key; nothing is
            loaded then.
    """
    state = _plain_state(state_dict, source)
    slots = torch_slots(model)
    check_state_dict(state, slots, model.variant, source)
    for slot in slots:
        slot.variable.assign(keras_value(slot.kind, as_array(state[slot.key])))


def model_from_state_dict(
    state_dict: Mapping,
    variant: str,
    num_classes: int = 2,
    preprocessing: str | dict = "per_image",
    source: str = "state_dict",
    **kwargs,
):
    """A `SiameseChangeModel` holding a checkpoint of the authors' PyTorch code.

    The band count is read from ``conv11.weight`` (half its input channels for FC-EF, which
    stacks both dates) and the widths from each level's first conv (16, 32, 64, 128 as
    published), so any input band count converts. The model is the published network on
    PyTorch's grid (``alignment="torch"``, depth 4, 2, 2, 3, 3 convs, dropout 0.2), and its
    change probability equals ``exp(output[:, 1])`` of the PyTorch model on the same input.

    Args:
        state_dict: names to torch tensors or NumPy arrays; keys prefixed ``module.``
            (``nn.DataParallel``) are read without the prefix.
        variant: ``"diff"`` (``SiamUnet_diff``), ``"conc"`` (``SiamUnet_conc``) or ``"ef"``
            (``Unet``).
        num_classes: 2 keeps the published softmax head; 1 folds it into a sigmoid.
        preprocessing: the model's input scaling; ``"per_image"`` (default) is the notebook's
            per-image standardisation, which the published checkpoints were trained on.
        source: what to call the checkpoint in errors, e.g. its file name.
        **kwargs: other `SiameseChangeModel` arguments (``threshold``, ``dropout``, ``name``).

    Raises:
        CheckpointError: the state_dict does not hold that variant's network.
        ConfigError: an unknown variant or a bad model argument.
    """
    from siamese_cd.models.siamese import SiameseChangeModel

    if variant not in TORCH_CLASSES:
        raise ConfigError(f"variant must be one of {tuple(TORCH_CLASSES)}, got {variant!r}")
    state = _plain_state(state_dict, source)
    fixed = {
        "variant": variant,
        "depth": len(PUBLISHED_CONVS),
        "filters": _widths(state),
        "convs_per_level": list(PUBLISHED_CONVS),
        "in_channels": _bands(state, variant, source),
        "num_classes": num_classes,
        "preprocessing": preprocessing,
        "init": "torch",
        "alignment": "torch",
    }
    clash = sorted(set(kwargs) & set(fixed))
    if clash:
        raise ConfigError(f"the checkpoint decides {', '.join(clash)}; leave them out")
    model = SiameseChangeModel(**fixed, **kwargs)
    load_state_dict(model, state, source)
    return model


def _plain_state(state_dict, source: str) -> dict:
    """The state_dict as a dict of NumPy arrays, without a ``module.`` prefix on every key."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"{source}: holds a {type(state_dict).__name__}, not a state_dict (a mapping of "
            "parameter names to tensors)"
        )
    # Arrays once, here: shapes are then read alike from tensors on any device and arrays.
    state = {str(key): as_array(value) for key, value in state_dict.items()}
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def _bands(state: Mapping, variant: str, source: str) -> int:
    if "conv11.weight" not in state:
        raise CheckpointError(
            f"{source}: no conv11.weight, the first conv of the published "
            f"{TORCH_CLASSES[variant]}, so neither the network nor its bands can be told; "
            f"keys found: {_listed(sorted(map(str, state)))}"
        )
    channels = int(np.shape(state["conv11.weight"])[1])
    if variant != "ef":
        return channels
    if channels % 2:
        raise CheckpointError(
            f"{source}: conv11.weight takes {channels} input channels; Unet (FC-EF, "
            "variant='ef') stacks both dates, an even count: is it a SiamUnet_diff or "
            "SiamUnet_conc checkpoint?"
        )
    return channels // 2


def _widths(state: Mapping) -> list[int]:
    """Each level's width from its first conv, the published one where that is missing."""
    return [
        int(np.shape(state[f"conv{level}1.weight"])[0])
        if f"conv{level}1.weight" in state
        else PUBLISHED_WIDTHS[level - 1]
        for level in range(1, len(PUBLISHED_WIDTHS) + 1)
    ]


def torch_value(kind: str, value: np.ndarray) -> np.ndarray:
    """The inverse of `keras_value`: a Keras variable's value in PyTorch's layout."""
    if kind == "conv":
        return value.transpose(3, 2, 0, 1)
    if kind == "flipped":
        return value.transpose(2, 3, 0, 1)[:, :, ::-1, ::-1]
    if kind == "upconv":
        return value.transpose(3, 2, 0, 1)
    if kind in ("folded", "folded_vector"):
        raise ConfigError("a folded 1-channel head has no 2-class PyTorch form")
    return value


def to_state_dict(model) -> dict[str, np.ndarray]:
    """`model`'s weights under the published names and layouts, as NumPy arrays.

    The inverse of `load_state_dict`, for a model with ``alignment="torch"`` and a 2-class
    head: ``net.load_state_dict({k: torch.from_numpy(v) ...}, strict=False)`` puts them in
    the authors' network (``num_batches_tracked`` is not written).

    Example:
        >>> import numpy as np
        >>> from siamese_cd.models.siamese import SiameseChangeModel
        >>> model = SiameseChangeModel.paper("conc", in_channels=4, filters=2)
        >>> state = to_state_dict(model)
        >>> state["conv11.weight"].shape, state["conv12d.weight"].shape  # (out, in) / (in, out)
        ((2, 4, 3, 3), (6, 2, 3, 3))
        >>> copy = model_from_state_dict(state, "conc")
        >>> x = np.random.default_rng(0).random((1, 19, 23, 4), np.float32)
        >>> bool(np.allclose(copy.predict((x, x), verbose=0), model.predict((x, x), verbose=0)))
        True
    """
    return {
        slot.key: np.ascontiguousarray(torch_value(slot.kind, np.asarray(slot.variable)))
        for slot in torch_slots(model)
    }
