"""The names of the losses, without Keras: for argument checks that must stay fast.

`siamese_cd.models.losses` maps each name to its class; the command line and the tuner check names
here, so that ``siamese-cd --help`` and usage errors never import TensorFlow.

Example:
    >>> is_loss_name("bce+dice"), is_loss_name("lovasz")
    (True, False)
"""

from __future__ import annotations

import argparse

LOSS_NAMES = ("bce", "dice", "focal")


def is_loss_name(spec) -> bool:
    """Whether `spec` is a name `siamese_cd.models.losses.get_loss` understands, e.g.
    ``"bce+dice"``."""
    return isinstance(spec, str) and all(name.strip() in LOSS_NAMES for name in spec.split("+"))


def loss_name_arg(text: str) -> str:
    """``argparse`` type of a loss name, or a sum of them such as ``bce+dice``."""
    if not is_loss_name(text):
        raise argparse.ArgumentTypeError(
            f"unknown loss {text!r}: use {', '.join(LOSS_NAMES)} or a sum such as bce+dice"
        )
    return text
