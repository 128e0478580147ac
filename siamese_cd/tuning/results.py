"""What a search found: trial summaries, the results table, and the export of the best model.

Example:
    >>> summary = TrialSummary(
    ...     trial_id="07", val_f1=0.81234, best_epoch=12, params=38_402,
    ...     hyperparameters={"depth": 3},
    ...     model_config={"variant": "diff", "depth": 3, "filters": [8, 16, 32],
    ...                   "convs_per_level": 2, "dropout": 0.1},
    ...     compile_config={"learning_rate": 3e-4, "loss": "bce"})
    >>> print(format_table([summary]))
    rank  trial  val_f1  epoch  params  variant  depth  widths   convs  dropout        lr  loss
       1  07     0.8123     12  38,402  diff         3  8-16-32      2     0.10  3.00e-04  bce
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from siamese_cd.atomic import write_text
from siamese_cd.data.pipeline.stats import change_fraction
from siamese_cd.models.losses import weigh_pending
from siamese_cd.training.pipeline import finish_run
from siamese_cd.training.settings import MONITOR
from siamese_cd.tuning.space import ChangeHyperModel

BEST_MODEL_NAME = "best_model.keras"
BEST_HPS_NAME = "best_hyperparameters.json"
#: The `SiameseChangeModel` arguments a summary records: enough to build the network again,
#: with the search's measured preprocessing.
MODEL_KEYS = (
    "variant", "depth", "filters", "convs_per_level", "dropout", "batch_norm", "in_channels",
    "num_classes", "threshold", "preprocessing",
)  # fmt: skip


def count_params(model: keras.Model) -> int:
    """Trainable parameters, as Keras Tuner counts them for ``max_model_size``."""
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


@dataclass
class TrialSummary:
    """One finished trial: its score, when it peaked, its size and its hyperparameters.

    `model_config` holds the `SiameseChangeModel` arguments and `compile_config` the
    arguments of its `compile` (the recipe's learning rate and the loss), enough to train the
    same network again from scratch: ``SiameseChangeModel(**model_config)`` then
    ``compile(**compile_config)``. `precision` is the one the trials trained and scored in:
    the best model scores `val_f1` again loaded in it (``dtype_policy(precision)``).
    """

    trial_id: str
    val_f1: float
    best_epoch: int
    params: int
    hyperparameters: dict[str, Any]
    model_config: dict[str, Any]
    compile_config: dict[str, Any]
    precision: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            MONITOR: self.val_f1,
            "best_epoch": self.best_epoch,
            "trainable_params": self.params,
            "hyperparameters": self.hyperparameters,
            "model_config": self.model_config,
            "compile": self.compile_config,
            "precision": self.precision,
        }


def summarize_trials(tuner: kt.Tuner, hypermodel: ChangeHyperModel) -> list[TrialSummary]:
    """Every completed trial, best ``val_f1`` first, with its parameter count.

    Each trial's model is built once (no training) to count its parameters and read its
    configuration.
    """
    oracle = tuner.oracle
    ranked = [
        t
        for t in oracle.get_best_trials(len(oracle.trials))
        if t.status == kt.engine.trial.TrialStatus.COMPLETED
    ]
    summaries = []
    for trial in ranked:
        hp = trial.hyperparameters.copy()
        keras.backend.clear_session(free_memory=False)
        model = hypermodel.build(hp)
        # The keyword form's arguments: the backbone's config, the threshold, the preprocessing.
        config = {
            **model.backbone.get_config(),
            "threshold": model.threshold,
            "preprocessing": model.preprocessor.get_config(),
        }
        summaries.append(
            TrialSummary(
                trial_id=trial.trial_id,
                val_f1=float(trial.score),
                best_epoch=int(trial.best_step) + 1,
                params=count_params(model),
                hyperparameters={k: v for k, v in hp.values.items() if not k.startswith("tuner/")},
                model_config={key: config[key] for key in MODEL_KEYS},
                compile_config={
                    "learning_rate": float(hp.get("learning_rate")),
                    "loss": str(hp.get("loss")),
                },
                precision=hypermodel.precision,
            )
        )
    return summaries


def format_table(summaries: Sequence[TrialSummary]) -> str:
    """A plain-text table: rank, trial, val_f1, best epoch, parameters, hyperparameters."""
    header = (
        "rank", "trial", MONITOR, "epoch", "params", "variant", "depth", "widths",
        "convs", "dropout", "lr", "loss",
    )  # fmt: skip
    rows = [header]
    for rank, s in enumerate(summaries, start=1):
        config = s.model_config
        filters = config["filters"]
        rows.append(
            (
                str(rank),
                s.trial_id,
                f"{s.val_f1:.4f}",
                str(s.best_epoch),
                f"{s.params:,}",
                config["variant"],
                str(config["depth"]),
                "-".join(map(str, filters)) if isinstance(filters, list) else str(filters),
                str(config["convs_per_level"]),
                f"{config['dropout']:.2f}",
                f"{s.compile_config['learning_rate']:.2e}",
                s.compile_config["loss"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {0, 2, 3, 4, 6, 8, 9, 10}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def export_best(
    tuner: kt.Tuner,
    best: TrialSummary,
    project_dir: str | os.PathLike,
    train=None,
    val=None,
    *,
    choose: bool = True,
    monitor: str = MONITOR,
) -> tuple[Path, Path]:
    """Write ``best_model.keras`` and ``best_hyperparameters.json`` into `project_dir`.

    The model carries the weights of the best trial's best epoch and its preprocessing. A
    class-weighted loss still waiting for the change weight (``pos_weight="auto"``) gets it
    from `train`'s change fraction first, so the saved model can `evaluate()` straight away.
    It is then finished as every training run is (`siamese_cd.training.pipeline.finish_run`):
    with `choose` and a validation split `val`, its decision threshold is the one with the
    best F1 there (0.5 when `monitor` says the split holds no change), recorded in the JSON
    file too.

    Returns:
        The paths of the JSON file and the model file.
    """
    project_dir = Path(project_dir)
    model = tuner.get_best_models(1)[0]
    if train is not None:
        weigh_pending(model.loss, lambda: change_fraction(train, progress=False))
    model_path = project_dir / BEST_MODEL_NAME
    finish_run(model_path, val, None, model=model, monitor=monitor, choose=choose)
    hps_path = project_dir / BEST_HPS_NAME
    record = {
        **best.to_dict(),
        "objective": MONITOR,
        "threshold": float(model.threshold),
        "model": BEST_MODEL_NAME,
    }
    write_text(hps_path, json.dumps(record, indent=2) + "\n")
    return hps_path, model_path
