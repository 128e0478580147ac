"""`FCSiamBackbone`: the FC-EF / FC-Siam-conc / FC-Siam-diff architecture and nothing else.

A functional model from two network inputs (already scaled by the preprocessor) to change
logits of the same height and width. It holds no loss, optimizer or pixel scaling: the task
model, `SiameseChangeModel`, wraps it between its preprocessing and its head.
"""

from __future__ import annotations

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

    Args:
        variant: ``"diff"``, ``"conc"`` or ``"ef"``.
        depth: encoder levels (pooling steps), 2 to 6.
        widths: filters per level, shallowest first.
        convs: conv units per level, shallowest first.
        dropout: spatial dropout after each conv unit.
        batch_norm: BatchNorm after each conv.
        in_channels: bands per image.
        num_classes: channels of the logits.
        init: ``"glorot"`` (Keras) or ``"torch"`` (PyTorch) initialisation of the convs.
        alignment: ``"keras"`` (default) or ``"torch"`` (see above).
        **kwargs: `name`, `trainable` or `dtype`, passed to `keras.Model`.

    Example:
        >>> import numpy as np
        >>> backbone = FCSiamBackbone("diff", 2, [4, 8], [2, 1], 0.0, True, 3, 1)
        >>> x = np.zeros((1, 10, 12, 3), np.float32)
        >>> tuple(backbone((x, x)).shape)
        (1, 10, 12, 1)
    """

    def __init__(
        self,
        variant: str,
        depth: int,
        widths: Sequence[int],
        convs: Sequence[int],
        dropout: float,
        batch_norm: bool,
        in_channels: int,
        num_classes: int,
        init: str = "glorot",
        alignment: str = "keras",
        **kwargs,
    ):
        kwargs.setdefault("name", "backbone")
        # === Layers and functional model ===
        t1 = keras.Input((None, None, in_channels), name="t1")
        t2 = keras.Input((None, None, in_channels), name="t2")
        torch_grid = alignment == "torch"
        pad = None if torch_grid else PadToMultiple(2**depth, name="pad")
        p1, p2 = (t1, t2) if torch_grid else (pad(t1), pad(t2))
        blocks = {"init": init, "alignment": alignment}
        if variant == "ef":
            stacked = layers.Concatenate(name="early_fusion")([p1, p2])
            encoder = build_encoder(2 * in_channels, widths, convs, dropout, batch_norm, **blocks)
            *skips, bottleneck = encoder(stacked)
            skip_groups = [[s] for s in skips]
        else:
            encoder = build_encoder(in_channels, widths, convs, dropout, batch_norm, **blocks)
            *skips1, bottleneck1 = encoder(p1)
            if torch_grid:  # the first date first, as PyTorch runs them (see `After`)
                p2 = After(name="after_t1")([p2, bottleneck1])
            *skips2, bottleneck = encoder(p2)
            if variant == "diff":
                skip_groups = [
                    [ops.abs(layers.Subtract(name=f"skip{i}_diff")([a, b]))]
                    for i, (a, b) in enumerate(zip(skips1, skips2), start=1)
                ]
            else:
                skip_groups = [[a, b] for a, b in zip(skips1, skips2)]
        logits = decode(
            bottleneck, skip_groups, widths, convs, dropout, batch_norm, num_classes, **blocks
        )
        if not torch_grid:
            logits = CropLike(name="crop", dtype="float32")([logits, t1])
        super().__init__(inputs=(t1, t2), outputs=logits, **kwargs)

        # === Config ===
        self.variant = variant
        self.depth = depth
        self.widths = list(widths)
        self.convs = list(convs)
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
            "widths": self.widths,
            "convs": self.convs,
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "init": self.init,
            "alignment": self.alignment,
        }

    @classmethod
    def from_config(cls, config: dict) -> FCSiamBackbone:
        return cls(**config)
