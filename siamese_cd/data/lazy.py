"""Lazy exports for the data packages (PEP 562): names are imported on first use.

A package lists what it exports and the module defining each name; `lazy_exports` gives it
the module-level ``__getattr__`` and ``__dir__`` that import the defining module when a name is
first asked for. So ``import siamese_cd.data`` (and ``siamese-cd --help``) never imports Keras
or TensorFlow, whichever names the packages export.

Example:
    >>> import siamese_cd.data.layouts as layouts
    >>> layouts.pair_by_stem.__module__
    'siamese_cd.data.layouts.pairing'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for `package`, exporting `exports` (name -> module)."""

    def look_up(name: str):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)  # later look-ups skip this function
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def listing() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return look_up, listing
