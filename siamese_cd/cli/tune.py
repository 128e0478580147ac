"""``siamese-cd tune``: hyperparameter search, as ``tuning/search.py`` runs it.

The options and the search belong to `siamese_cd.tuning.search`; this module only lists the
command. That package imports TensorFlow and Keras Tuner, so it is imported when the
command's arguments are needed, never for ``siamese-cd --help``.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "search hyperparameters (Keras Tuner) on DATA/train and DATA/val"
DESCRIPTION = (
    "Search architectures and training settings with Keras Tuner, log every trial to "
    "TensorBoard, and export the best model. The same as running tuning/search.py."
)


def _search():
    return importlib.import_module("siamese_cd.tuning.search")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _search().add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return _search().run(args)
