"""Keras Tuner search over the FC-Siam networks: depth, widths, convs, variant, dropout, lr, loss.

One job per module:

- `siamese_cd.tuning.space`: `ChangeHyperModel`, the search space and how one trial trains.
- `siamese_cd.tuning.tuners`: Hyperband, Bayesian and random search maximising ``val_f1``
  (`make_tuner`).
- `siamese_cd.tuning.results`: trial summaries, the results table, `export_best`.
- `siamese_cd.tuning.devices`: the role in a distributed search, and the devices.
- `siamese_cd.tuning.search`: the command behind ``python tuning/search.py`` and
  ``siamese-cd tune`` (`add_arguments`, `run`, `main`). Its flags and parsers are the
  command's; import them from that module. The package exports what a Python search uses.

Every trial gets its own TensorBoard run (scalars, HParams and ``t1 | t2 | truth |
prediction`` panels) when a `keras.callbacks.TensorBoard` is passed to ``tuner.search``: Keras
Tuner gives a per-trial log folder and tensorboard's HParams callback only to callbacks of that
class, and the trial's `MaskImageLogger` writes beside it.

Example:
    >>> from siamese_cd.tuning import ChangeHyperModel, make_tuner
    >>> hypermodel = ChangeHyperModel(depth=(2, 4), filters=(8, 16), variant=("diff", "ef"))
    >>> hypermodel.space()["variant"]
    ['diff', 'ef']
"""

from siamese_cd.tuning.devices import configure_devices, distributed_role
from siamese_cd.tuning.results import (
    TrialSummary,
    count_params,
    export_best,
    format_table,
    summarize_trials,
)
from siamese_cd.tuning.space import ChangeHyperModel, FatalConfigError
from siamese_cd.tuning.tuners import (
    OBJECTIVE,
    TUNERS,
    BayesianOptimization,
    Hyperband,
    RandomSearch,
    make_tuner,
)

__all__ = [
    "OBJECTIVE",
    "TUNERS",
    "BayesianOptimization",
    "ChangeHyperModel",
    "FatalConfigError",
    "Hyperband",
    "RandomSearch",
    "TrialSummary",
    "configure_devices",
    "count_params",
    "distributed_role",
    "export_best",
    "format_table",
    "make_tuner",
    "summarize_trials",
]
