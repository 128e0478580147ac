"""Keep TensorFlow's start-up log lines off the terminal unless ``--verbose`` is given.

``TF_CPP_MIN_LOG_LEVEL=3`` silences TensorFlow's own C++ log, but some lines (``cudart_stub``,
absl's "All log messages before absl::InitializeLog() is called") are written while the
TensorFlow library loads, before any setting is read. So the import of ``tensorflow`` itself,
whenever and by whomever it happens, runs with the process's standard error (file descriptor
2) pointed at ``/dev/null``. Nothing is imported here: commands that never touch TensorFlow
never pay for it.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import sys

QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO, WARNING and ERROR lines
    "ABSL_MIN_LOG_LEVEL": "3",
}


@contextlib.contextmanager
def stderr_silenced():
    """Point file descriptor 2 at /dev/null for the duration (C libraries write there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _SilentLoader:
    """Runs the real loader of the ``tensorflow`` package with standard error silenced."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with stderr_silenced():
            self.loader.exec_module(module)
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)


class _TensorFlowFinder:
    """A meta path finder that wraps the loader of ``tensorflow`` (and nothing else)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate the package
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilentLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up lines for the rest of this process.

    Sets the log-level environment variables (read by TensorFlow when it loads) and, if
    TensorFlow is not imported yet, silences standard error while it is.

    Example:
        >>> quiet_tensorflow()
        >>> os.environ["TF_CPP_MIN_LOG_LEVEL"]
        '3'
    """
    os.environ.update(QUIET_ENVIRONMENT)
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _TensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowFinder())
