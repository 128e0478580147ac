"""Griffe extension: read a Google-style ``Example:`` section as ``Examples:``.

The library's docstrings title their doctests ``Example:`` (Napoleon accepts both spellings);
griffe knows only the plural and would render the singular as an admonition of plain text,
where doctest output such as ``[0.2, 0.2]`` looks like a Markdown link.
"""

from __future__ import annotations

import re

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class SingularExamples(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
