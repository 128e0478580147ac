"""Keras Tuner's Hyperband, Bayesian and random search, maximising ``val_f1``.

Each tuner prints a line when a trial starts and ends, naming the tuner process, and
`make_tuner` builds one over a `ChangeHyperModel`.

Example:
    A whole search, one trial of one epoch on four tiny pairs:

    >>> import tempfile, warnings
    >>> import numpy as np
    >>> from siamese_cd.tuning import ChangeHyperModel
    >>> rng = np.random.default_rng(0)
    >>> t1 = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    >>> t2 = t1.copy(); t2[:, 8:16, 8:16] = 255
    >>> masks = np.zeros((4, 32, 32, 1), np.float32); masks[:, 8:16, 8:16] = 1
    >>> hypermodel = ChangeHyperModel(variant="diff", depth=2, filters=2, loss="bce",
    ...                               preprocessing="unit", pos_weight=2.0)
    >>> tuner = make_tuner("random", hypermodel, max_trials=1,
    ...                    directory=tempfile.mkdtemp(), project_name="tiny")
    >>> with warnings.catch_warnings():  # no TensorBoard callback in this example
    ...     warnings.simplefilter("ignore")
    ...     tuner.search((t1, t2), masks, validation_data=((t1, t2), masks), epochs=1,
    ...                  verbose=0)  # doctest: +ELLIPSIS
    Trial id 0 started on tuner0
    Trial id 0 completed on tuner0: val_f1 ...
    >>> tuner.oracle.objective.name
    'val_f1'
"""

from __future__ import annotations

import os
import sys

import keras_tuner as kt

from siamese_cd.errors import ConfigError
from siamese_cd.training.settings import MONITOR, MONITOR_MODES
from siamese_cd.tuning.space import ChangeHyperModel

#: What every tuner maximises: the change-class F1 on the validation split, over all pixels,
#: the value every training run selects by.
OBJECTIVE = kt.Objective(MONITOR, direction=MONITOR_MODES[MONITOR])


class _ReportingTuner:
    """Prints one line when a trial starts and one when it ends, naming the tuner process.

    Keras Tuner's own display runs only in the chief of a distributed search and hides why a
    trial failed; these lines show every trial in the process that runs it, with the error.
    """

    def on_trial_begin(self, trial):
        print(f"Trial id {trial.trial_id} started on {self.tuner_id}", flush=True)
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        status = trial.status
        if status == kt.engine.trial.TrialStatus.COMPLETED:
            score = self.oracle.get_trial(trial.trial_id).score
            print(f"Trial id {trial.trial_id} completed on {self.tuner_id}: {MONITOR} {score:.4f}")
        else:
            reason = (trial.message or "no message").strip().splitlines()[-1]
            print(
                f"Trial id {trial.trial_id} {status.lower()} on {self.tuner_id}: {reason}",
                file=sys.stderr,
            )
        sys.stdout.flush()


class Hyperband(_ReportingTuner, kt.Hyperband):
    """`keras_tuner.Hyperband` printing a line per trial start and end."""


class BayesianOptimization(_ReportingTuner, kt.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` printing a line per trial start and end."""


class RandomSearch(_ReportingTuner, kt.RandomSearch):
    """`keras_tuner.RandomSearch` printing a line per trial start and end."""


TUNERS = {"hyperband": Hyperband, "bayesian": BayesianOptimization, "random": RandomSearch}


def make_tuner(
    kind: str,
    hypermodel: ChangeHyperModel,
    *,
    max_trials: int | None = None,
    max_epochs: int = 20,
    hyperband_factor: int = 3,
    executions_per_trial: int = 1,
    max_model_size: int | None = None,
    directory: str | os.PathLike = "logs/tuning",
    project_name: str = "siamese_cd",
    overwrite: bool = False,
    seed: int | None = 0,
    distribution_strategy=None,
) -> kt.Tuner:
    """A tuner maximising ``val_f1`` over `hypermodel`'s space.

    With ``overwrite=False`` an existing project in ``directory/project_name`` is resumed:
    finished trials are kept and an interrupted one is run again.

    Args:
        kind: ``"hyperband"``, ``"bayesian"`` or ``"random"``.
        hypermodel: the search space.
        max_trials: trials to run (default 10 for Bayesian and random search). Hyperband
            plans its own trials from `max_epochs` and `hyperband_factor`; a value here caps
            their number.
        max_epochs: Hyperband's largest epoch budget of one model. The other tuners take the
            epochs from ``search(epochs=...)``.
        hyperband_factor: Hyperband's reduction factor between rounds.
        executions_per_trial: models trained (from new initial weights) per trial; their
            ``val_f1`` is averaged.
        max_model_size: trainable parameters above which a model is skipped (trial failed).
        directory: where projects live.
        project_name: the project's folder in `directory`.
        overwrite: start afresh, deleting the project.
        seed: seed of the tuner's sampling.
        distribution_strategy: e.g. `tf.distribute.MirroredStrategy()`; each trial builds
            and trains under its scope.

    Raises:
        ConfigError: for an unknown `kind` or a budget below 1.

    Example:
        >>> import tempfile
        >>> tuner = make_tuner("hyperband", ChangeHyperModel(depth=2, filters=2),
        ...                    max_epochs=9, directory=tempfile.mkdtemp(), project_name="hb")
        >>> type(tuner).__name__, tuner.oracle.max_epochs
        ('Hyperband', 9)
        >>> make_tuner("grid", ChangeHyperModel())
        Traceback (most recent call last):
        ...
        siamese_cd.errors.ConfigError: tuner must be one of hyperband, bayesian, random, got 'grid'
    """
    # Over 60 lines with its docstring, which documents every setting; the code is short.
    if kind not in TUNERS:
        raise ConfigError(f"tuner must be one of {', '.join(TUNERS)}, got {kind!r}")
    for name, value in (
        ("max_trials", max_trials),
        ("max_epochs", max_epochs),
        ("executions_per_trial", executions_per_trial),
        ("max_model_size", max_model_size),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if hyperband_factor < 2:
        raise ConfigError(f"hyperband_factor must be at least 2, got {hyperband_factor}")
    common = dict(
        hypermodel=hypermodel,
        objective=OBJECTIVE,
        seed=seed,
        executions_per_trial=executions_per_trial,
        max_model_size=max_model_size,
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
        distribution_strategy=distribution_strategy,
    )
    if kind == "hyperband":
        tuner = Hyperband(max_epochs=max_epochs, factor=hyperband_factor, **common)
        # The oracle stops creating trials once it holds max_trials of them (base Oracle
        # logic, which Hyperband inherits without exposing the argument).
        tuner.oracle.max_trials = max_trials
        return tuner
    return TUNERS[kind](max_trials=10 if max_trials is None else max_trials, **common)
