"""`FCSiamBackbone`: the FC-EF / FC-Siam-conc / FC-Siam-diff architecture and nothing else.

A functional model from two network inputs (already scaled by the preprocessor) to change
logits of the same height and width. It holds no loss, optimizer or pixel scaling: the task
model, `SiameseChangeModel`, wraps it between its preprocessing and its head.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import keras
from keras import layers, ops

from siamese_cd.errors import ConfigError
from siamese_cd.models.blocks import (
    ALIGNMENTS,
    INITS,
    After,
    CropLike,
    PadToMultiple,
    build_encoder,
    decode,
)

VARIANTS = ("diff", "conc", "ef")


def resolve_widths(filters: int | Sequence[int], depth: int) -> list[int]:
    """Filters per level: an int is the first level's width, doubled at each level.

    Example:
        >>> resolve_widths(16, 4)
        [16, 32, 64, 128]
    """
    if isinstance(filters, int):
        widths = [filters * 2**level for level in range(depth)]
    else:
        widths = [int(f) for f in filters]
        if len(widths) != depth:
            raise ConfigError(f"filters has {len(widths)} widths for depth {depth}")
    if any(w < 1 for w in widths):
        raise ConfigError(f"filters must be positive, got {widths}")
    return widths


def resolve_convs(convs_per_level: int | Sequence[int] | None, depth: int) -> list[int]:
    """Convs per level. The default follows the paper: 2 in the first two levels, 3 below.

    Example:
        >>> resolve_convs(None, 4)
        [2, 2, 3, 3]
    """
    if convs_per_level is None:
        return [2 if level < 2 else 3 for level in range(depth)]
    if isinstance(convs_per_level, int):
        convs = [convs_per_level] * depth
    else:
        convs = [int(c) for c in convs_per_level]
    if len(convs) != depth:
        raise ConfigError(f"convs_per_level has {len(convs)} entries for depth {depth}")
    if convs[0] < 2 or any(c < 1 for c in convs):
        # Level 1 needs one conv unit plus the head.
        raise ConfigError(f"convs_per_level needs >= 2 at level 1 and >= 1 elsewhere: {convs}")
    return convs


def check_architecture(
    variant: str,
    depth: int,
    num_classes: int,
    dropout: float,
    bands: int,
    init: str = "glorot",
    alignment: str = "keras",
) -> None:
    """Refuse settings the architecture cannot take, with the setting named."""
    if alignment not in ALIGNMENTS:
        raise ConfigError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    if init not in INITS:
        raise ConfigError(f"init must be one of {INITS}, got {init!r}")
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not 2 <= depth <= 6:
        raise ConfigError(f"depth must be from 2 to 6, got {depth}")
    if num_classes not in (1, 2):
        raise ConfigError(f"num_classes must be 1 (sigmoid) or 2 (softmax), got {num_classes}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    if bands < 1:
        raise ConfigError(f"in_channels must be at least 1, got {bands}")


def _fc_siam_graph(
    variant: str,
    widths: list[int],
    convs: list[int],
    dropout: float,
    batch_norm: bool,
    in_channels: int,
    num_classes: int,
    init: str,
    alignment: str,
    dtype=None,
):
    """The network's inputs ``(t1, t2)`` and its logits, as functional tensors.

    Every layer computes in the dtype policy `dtype` (None: Keras's global one), except the
    head and the crop after it, which stay float32.
    """
    t1 = keras.Input((None, None, in_channels), name="t1")
    t2 = keras.Input((None, None, in_channels), name="t2")
    torch_grid = alignment == "torch"
    pad = None if torch_grid else PadToMultiple(2 ** len(widths), name="pad", dtype=dtype)
    p1, p2 = (t1, t2) if torch_grid else (pad(t1), pad(t2))
    blocks = {"init": init, "alignment": alignment, "dtype": dtype}
    if variant == "ef":
        stacked = layers.Concatenate(name="early_fusion", dtype=dtype)([p1, p2])
        encoder = build_encoder(2 * in_channels, widths, convs, dropout, batch_norm, **blocks)
        *skips, bottleneck = encoder(stacked)
        skip_groups = [[s] for s in skips]
    else:
        encoder = build_encoder(in_channels, widths, convs, dropout, batch_norm, **blocks)
        *skips1, bottleneck1 = encoder(p1)
        if torch_grid:  # the first date first, as PyTorch runs them (see `After`)
            p2 = After(name="after_t1", dtype=dtype)([p2, bottleneck1])
        *skips2, bottleneck = encoder(p2)
        if variant == "diff":
            skip_groups = [
                [ops.abs(layers.Subtract(name=f"skip{i}_diff", dtype=dtype)([a, b]))]
                for i, (a, b) in enumerate(zip(skips1, skips2), start=1)
            ]
        else:
            skip_groups = [[a, b] for a, b in zip(skips1, skips2)]
    logits = decode(
        bottleneck, skip_groups, widths, convs, dropout, batch_norm, num_classes, **blocks
    )
    if not torch_grid:
        logits = CropLike(name="crop", dtype="float32")([logits, t1])
    return (t1, t2), logits


@keras.saving.register_keras_serializable(package="siamese_cd")
class FCSiamBackbone(keras.Model):
    """Encoder-decoder of Daudt et al. (ICIP 2018) from ``(t1, t2)`` to change logits.

    - ``"diff"`` (FC-Siam-diff): one encoder with shared weights runs on both dates; each
      decoder level concatenates the upsampled features with ``|skip_t1 - skip_t2|``.
    - ``"conc"`` (FC-Siam-conc): shared encoder; skips are ``[skip_t1, skip_t2]``.
    - ``"ef"`` (FC-EF): the dates are stacked on channels at the input of a plain U-Net.

    In the siamese variants the decoder starts from the second date's bottleneck, as in the
    published code. With ``alignment="keras"`` inputs of any height and width are padded to
    a multiple of ``2**depth`` and the logits cropped back. With ``alignment="torch"`` the
    network is the published PyTorch one to the pixel: no padding of the input, pooling that
    floors odd sides, upsampled features on PyTorch's grid replicated to the skip's size
    (`siamese_cd.models.blocks.upsample`), PyTorch's running variance in BatchNorm; any side
    of at least ``2**depth`` pixels.

    The architecture is configured here and only here: `SiameseChangeModel` stores this
    backbone's config in its own, and its keyword form (``SiameseChangeModel(variant="conc",
    depth=3)``) passes these arguments on unchanged.

    Args:
        variant: ``"diff"`` (default), ``"conc"`` or ``"ef"``.
        depth: number of encoder levels (pooling steps), 2 to 6; default 4.
        filters: width of the first level, doubled per level (default 16); or one width per
            level, shallowest first.
        convs_per_level: conv units per level, shallowest first; an int for all levels. The
            default is the paper's: 2 in the first two levels, 3 in deeper ones.
        dropout: spatial dropout after each conv unit; default 0.2.
        batch_norm: BatchNorm after each conv; default True.
        in_channels: bands per image, e.g. 3 (default) for RGB or 13 for Sentinel-2.
        num_classes: channels of the logits: 2 (default, as published) for a softmax over
            no-change/change, 1 for a sigmoid change map.
        init: ``"torch"`` (default: kernels and biases from U(±1/sqrt(fan_in)), as the
            published PyTorch code initialises them; the recipe ablation in
            ``benchmarks/recipe_ablation.py`` chose it) or ``"glorot"`` (Keras's
            Glorot-uniform kernels, zero biases).
        alignment: ``"torch"`` (default, as published) or ``"keras"`` (see above);
            `from_torch_state_dict` of `SiameseChangeModel` needs ``"torch"``.
        **kwargs: `name`, `trainable` or `dtype`, passed to `keras.Model`.

    Raises:
        ConfigError: a setting the architecture cannot take, named.

    Example:
        >>> import numpy as np
        >>> backbone = FCSiamBackbone("diff", depth=2, filters=[4, 8], convs_per_level=[2, 1])
        >>> x = np.zeros((1, 10, 12, 3), np.float32)
        >>> tuple(backbone((x, x)).shape), backbone.widths, backbone.convs
        ((1, 10, 12, 2), [4, 8], [2, 1])
    """

    def __init__(
        self,
        variant: str = "diff",
        depth: int = 4,
        filters: int | Sequence[int] = 16,
        convs_per_level: int | Sequence[int] | None = None,
        dropout: float = 0.2,
        batch_norm: bool = True,
        in_channels: int = 3,
        num_classes: int = 2,
        init: str = "torch",
        alignment: str = "torch",
        **kwargs,
    ):
        check_architecture(variant, depth, num_classes, dropout, in_channels, init, alignment)
        widths = resolve_widths(filters, depth)
        convs = resolve_convs(convs_per_level, depth)
        kwargs.setdefault("name", "backbone")
        # A functional model ignores dtype=, so it goes to every layer (as keras-hub's
        # backbones pass it) and is set on the model after.
        dtype = kwargs.pop("dtype", None)
        # === Layers and functional model ===
        inputs, logits = _fc_siam_graph(
            variant, widths, convs, dropout, batch_norm, in_channels, num_classes, init, alignment,
            dtype,
        )  # fmt: skip
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        if dtype is not None:
            self.dtype_policy = dtype

        # === Config ===
        self.variant = variant
        self.depth = depth
        # As given (an int stays an int), so that the config reads as it was written.
        self.filters = filters if isinstance(filters, int) else list(widths)
        self.convs_per_level = convs_per_level if convs_per_level is None else list(convs)
        self.widths = widths
        self.convs = convs
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.init = init
        self.alignment = alignment

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "variant": self.variant,
            "depth": self.depth,
            "filters": self.filters,
            "convs_per_level": self.convs_per_level,
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "init": self.init,
            "alignment": self.alignment,
        }

    @classmethod
    def from_config(cls, config: dict) -> FCSiamBackbone:
        config = dict(config)
        # Backbones saved on their own before the task stored them named the resolved
        # lists `widths` and `convs`.
        if "widths" in config:
            config["filters"] = config.pop("widths")
            config["convs_per_level"] = config.pop("convs")
        return cls(**{**SAVED_BEFORE_DEFAULTS, **config})


#: Settings that files saved before the defaults became the published network's may lack,
#: with the value those files were computed with (then the default).
SAVED_BEFORE_DEFAULTS = {"num_classes": 1, "alignment": "keras"}


#: The architecture arguments of `SiameseChangeModel`'s keyword form: exactly those
#: `FCSiamBackbone` takes, so that their names, defaults and checks live in one place.
ARCHITECTURE_ARGUMENTS = tuple(
    name
    for name, parameter in inspect.signature(FCSiamBackbone.__init__).parameters.items()
    if name != "self" and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
)


def make_backbone(backbone: keras.Model | None, architecture: dict) -> keras.Model:
    """The backbone of a `SiameseChangeModel`: the one given, checked, or an `FCSiamBackbone`.

    Args:
        backbone: the model's ``backbone=``: any Keras model from ``(t1, t2)`` to change
            logits with ``in_channels`` and ``num_classes`` attributes; or None.
        architecture: the keyword form's `ARCHITECTURE_ARGUMENTS` given; only without
            `backbone`.

    Raises:
        ConfigError: a bad architecture setting, a backbone with architecture keywords too,
            or a backbone the change head cannot sit on.
    """
    if backbone is None:
        return FCSiamBackbone(**architecture)
    if isinstance(backbone, str):
        raise ConfigError(
            f"backbone must be a Keras model such as FCSiamBackbone, got the string "
            f"{backbone!r}; to choose the variant write variant={backbone!r}"
        )
    if not isinstance(backbone, keras.layers.Layer):
        raise ConfigError(
            f"backbone must be a Keras model such as FCSiamBackbone, got {type(backbone).__name__}"
        )
    if architecture:
        raise ConfigError(
            f"the backbone given decides {', '.join(sorted(architecture))}: leave the "
            "architecture keywords out, or build the backbone with them"
        )
    missing = [name for name in ("in_channels", "num_classes") if not hasattr(backbone, name)]
    if missing:
        raise ConfigError(
            f"the backbone {type(backbone).__name__} has no {' and no '.join(missing)} "
            "attribute: the model reads the bands it takes and its logit channels there"
        )
    if backbone.num_classes not in (1, 2):
        raise ConfigError(
            f"the backbone gives {backbone.num_classes} logit channels; the change head takes "
            "1 (sigmoid) or 2 (softmax)"
        )
    return backbone
