"""The search command, behind ``python tuning/search.py`` and ``siamese-cd tune``.

`add_arguments` declares the flags on any parser and `run` carries out the parsed command:
it loads ``DATA/train`` and ``DATA/val`` as raw pixels, measures the preprocessing and the
change weight once for the whole search, runs the tuner, prints the best trials and exports
the best model. Rerunning the same command resumes the search.

Example:
    >>> args = build_parser().parse_args(["--data", "data/synthetic", "--depth", "3", "4",
    ...                                   "--loss", "bce", "--preprocessing", "standardize"])
    >>> args.tuner, args.preprocessing
    ('hyperband', 'standardize')
    >>> hypermodel_from_args(args, in_channels=4).space()["depth"]
    [3, 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import keras_tuner as kt

from siamese_cd.atomic import write_text
from siamese_cd.data.layouts.splits import training_splits
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.errors import ConfigError, DatasetError, SiameseCDError, TrainingError
from siamese_cd.models.loss_names import loss_name_arg
from siamese_cd.models.losses import pos_weight_from_fraction
from siamese_cd.models.siamese import VARIANTS
from siamese_cd.options import add_data_options, positive_int
from siamese_cd.training.pipeline import validation_monitor
from siamese_cd.training.precision import add_precision_argument, resolve_precision
from siamese_cd.training.resume import settings_differences
from siamese_cd.training.settings import MONITOR
from siamese_cd.tuning.devices import configure_devices, distributed_role
from siamese_cd.tuning.results import TrialSummary, export_best, format_table, summarize_trials
from siamese_cd.tuning.space import PREPROCESSING_MODES, ChangeHyperModel
from siamese_cd.tuning.tuners import TUNERS, make_tuner

SETTINGS_NAME = "search_settings.json"
TENSORBOARD_DIR = "tensorboard"
COMPLETED = kt.engine.trial.TrialStatus.COMPLETED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the search's flags on `parser` (``tuning/search.py`` and ``siamese-cd tune``)."""
    parser.add_argument("--data", required=True, help="folder holding train/ and val/")
    parser.add_argument("--tuner", choices=tuple(TUNERS), default="hyperband")
    parser.add_argument(
        "--preprocessing",
        choices=PREPROCESSING_MODES,
        default="auto",
        help="pixel scaling inside every model, measured once on train/: unit (divide by the "
        "pixel type's maximum), standardize (per-band mean and std), auto (unit for 8-bit "
        "data, standardize otherwise; default)",
    )
    parser.add_argument(
        "--choose-threshold",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="set the exported best model's decision threshold to the one with the best F1 on "
        "DATA/val, as siamese-cd train does (default); --no-choose-threshold keeps 0.5",
    )
    _add_budget_arguments(parser)
    _add_space_arguments(parser)


def _add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-trials",
        type=positive_int,
        help="trials to run (default 10; Hyperband: no cap, it plans its own trials)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=20,
        help="epochs per trial; Hyperband's largest budget (default 20)",
    )
    parser.add_argument(
        "--hyperband-factor", type=int, default=3, help="Hyperband reduction factor (default 3)"
    )
    parser.add_argument("--executions-per-trial", type=positive_int, default=1)
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="global batch (default 16)"
    )
    parser.add_argument(
        "--crop-size", type=positive_int, help="train on one random crop of this side per scene"
    )
    parser.add_argument("--directory", default="logs/tuning", help="default logs/tuning")
    parser.add_argument("--project-name", default="siamese_cd", help="default siamese_cd")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete the project and start afresh"
    )
    add_precision_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    add_data_options(parser)
    parser.add_argument(
        "--gpus", type=int, help="GPUs to use (default all; 0 = CPU); >1 trains each trial on all"
    )
    parser.add_argument(
        "--distribute",
        choices=("auto", "none", "mirrored"),
        default="auto",
        help="each trial's strategy: auto = mirrored over the GPUs used when there are several; "
        "none = one device; mirrored = always (trials across machines: the chief/worker "
        "search, KERASTUNER_* variables)",
    )
    parser.add_argument(
        "--max-model-size", type=positive_int, help="skip models with more trainable params"
    )
    parser.add_argument("--top", type=positive_int, default=5, help="trials in the summary")
    parser.add_argument(
        "--image-samples",
        type=int,
        default=6,
        help="validation samples shown as mask images per trial (default 6; 0 = none)",
    )


def _add_space_arguments(parser: argparse.ArgumentParser) -> None:
    space = parser.add_argument_group(
        "search space", "One value fixes a hyperparameter; MIN MAX or a list narrows it."
    )
    space.add_argument("--variant", nargs="+", choices=VARIANTS, help="default diff conc ef")
    space.add_argument("--depth", nargs="+", type=int, metavar="N", help="MIN MAX (default 2 5)")
    space.add_argument(
        "--width-mode",
        choices=("per-level", "growth"),
        default="per-level",
        help="per-level: each level picks a width; growth: first width x growth per level",
    )
    space.add_argument(
        "--filters",
        nargs="+",
        type=positive_int,
        metavar="N",
        help="first-level widths (default 8 16 32); level k tries them x 2^(k-1)",
    )
    space.add_argument(
        "--growth", nargs="+", type=float, metavar="F", help="growth mode (default 1.5 2)"
    )
    space.add_argument(
        "--convs-per-level", nargs="+", type=int, metavar="N", help="MIN MAX (default 2 3)"
    )
    space.add_argument("--dropout", nargs="+", type=float, metavar="F", help="default 0 0.3")
    space.add_argument(
        "--learning-rate", nargs="+", type=float, metavar="F", help="log scale (default 1e-4 1e-2)"
    )
    space.add_argument(
        "--loss", nargs="+", type=loss_name_arg, metavar="NAME", help="default bce bce+dice"
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python tuning/search.py``."""
    parser = argparse.ArgumentParser(
        prog="tuning/search.py",
        description="Keras Tuner search over FC-EF / FC-Siam networks on DATA/train, scored "
        "by val_f1 on DATA/val. Rerunning the same command resumes the search.",
    )
    add_arguments(parser)
    return parser


def trial_strategy(mode: str, gpu_strategy):
    """The strategy every trial trains under: ``--distribute`` applied to what
    `configure_devices` found (a `MirroredStrategy` over several GPUs, or None).

    Example:
        >>> trial_strategy("none", object()) is None
        True
    """
    if mode == "none":
        return None
    if mode == "mirrored" and gpu_strategy is None:
        from siamese_cd.distributed.strategy import strategy_for

        strategy = strategy_for("mirrored")
        print(f"MirroredStrategy: every trial trains on {strategy.num_replicas_in_sync} replica(s)")
        return strategy
    return gpu_strategy


def hypermodel_from_args(
    args: argparse.Namespace,
    *,
    in_channels: int = 3,
    preprocessing: str | dict | None = None,
    pos_weight: float | str = "auto",
) -> ChangeHyperModel:
    """A `ChangeHyperModel` with the flags' narrowed or fixed ranges (defaults elsewhere).

    Args:
        args: the parsed flags.
        in_channels: bands per image of the data.
        preprocessing: the measured config; default the ``--preprocessing`` mode.
        pos_weight: the change weight of the ``bce`` loss, or ``"auto"``.

    Raises:
        ConfigError: naming the flag, for a range of more than two values or a flag that
            does not apply.
    """
    ranges = {
        "variant": args.variant,
        "depth": args.depth,
        "filters": args.filters,
        "growth": args.growth,
        "convs_per_level": args.convs_per_level,
        "dropout": args.dropout,
        "learning_rate": args.learning_rate,
        "loss": args.loss,
    }
    for name in ("depth", "convs_per_level", "dropout", "learning_rate"):
        if ranges[name] is not None and len(ranges[name]) > 2:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag}: give one value (fixed) or two (MIN MAX)")
    if args.growth is not None and args.width_mode != "growth":
        raise ConfigError("--growth applies to --width-mode growth")
    return ChangeHyperModel(
        **{k: v for k, v in ranges.items() if v is not None},
        width_mode=args.width_mode.replace("-", "_"),
        preprocessing=args.preprocessing if preprocessing is None else preprocessing,
        in_channels=in_channels,
        precision=resolve_precision(args.precision),
        pos_weight=pos_weight,
        image_samples=args.image_samples,
        seed=args.seed,
    )


def load_datasets(
    data: str | os.PathLike,
    batch_size: int,
    crop_size: int | None = None,
    seed: int = 0,
    multiple: int = 2**5,
    **reading,
) -> tuple[PairedImageDataset, PairedImageDataset]:
    """Training (shuffled, augmented, optionally cropped) and validation splits of `data`.

    Split folders, or OSCD and AirChange with their own split, as `siamese-cd train` reads
    them (`siamese_cd.data.layouts.splits.training_splits`); their default crop is a multiple of
    `multiple` (``2 ** depth`` of the deepest network tried). Both yield raw pixels: the
    models scale them. `reading`: ``label_threshold=`` and ``on_missing=``.

    Raises:
        DatasetError: if `data`, ``train/`` or ``val/`` is missing, or files do not pair.
    """
    data = Path(data)
    if not data.is_dir():
        raise DatasetError(f"{data}: no such folder (expected one holding train/ and val/)")
    splits = training_splits(
        data, batch_size=batch_size, crop_size=crop_size, seed=seed, multiple=multiple,
        with_test=False, **reading,
    )  # fmt: skip
    return splits.train, splits.val


def _settings(args: argparse.Namespace, hypermodel: ChangeHyperModel) -> dict:
    """What a resumed search must share with the search it resumes."""
    return {
        "tuner": args.tuner,
        # Flat, so a refused resume names the very range that changed.
        **{f"space.{name}": value for name, value in hypermodel.space().items()},
        "max_epochs": args.max_epochs,
        "hyperband_factor": args.hyperband_factor if args.tuner == "hyperband" else None,
        "executions_per_trial": args.executions_per_trial,
        "batch_size": args.batch_size,
        "crop_size": args.crop_size,
        "seed": args.seed,
        "max_model_size": args.max_model_size,
    }


def _check_settings(project_dir: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to resume a project with other settings: the saved space would silently win."""
    path = project_dir / SETTINGS_NAME
    if overwrite or not path.is_file():
        return
    saved = json.loads(path.read_text())
    changed = [
        f"{key}: {old!r} then, {new!r} now"
        for key, old, new in settings_differences(saved, settings)
    ]
    if changed:
        raise ConfigError(
            f"{project_dir} holds a search started with other settings ("
            + "; ".join(changed)
            + "). Rerun with the same flags to resume it, or pass --overwrite or another "
            "--project-name to start a new search."
        )


def _measure(args: argparse.Namespace, train: PairedImageDataset) -> ChangeHyperModel:
    """The hypermodel with the preprocessing and change weight measured once on `train`.

    Measured here rather than by every trial, and compiled into every model, so that the
    models the tuner reloads evaluate straight away.
    """
    from siamese_cd.data.pipeline.stats import change_fraction
    from siamese_cd.models.preprocessing import preprocessing_config

    progress = sys.stderr.isatty()
    config = preprocessing_config(train, args.preprocessing)
    print(f"Preprocessing: {config.get('scaling', args.preprocessing)} (measured on train/)")
    pos_weight = "auto"
    if any("bce" in map(str.strip, name.split("+")) for name in args.loss or ("bce",)):
        fraction = change_fraction(train, progress=progress)
        pos_weight = pos_weight_from_fraction(fraction)
        print(
            f"Change fraction of the training masks: {fraction:.4f}; change pixels weighted "
            f"by {pos_weight:.3f}"
        )
    return hypermodel_from_args(
        args, in_channels=train.channels, preprocessing=config, pos_weight=pos_weight
    )


def run_search(args: argparse.Namespace) -> list[TrialSummary] | None:
    """Run the search the parsed arguments describe; see `main`.

    Returns:
        The completed trials, best first; None in a distributed worker, which leaves the
        summary and export to the chief.
    """
    # Arguments and data are checked first: mistakes surface before TensorFlow starts.
    role = distributed_role()
    hypermodel_from_args(args)
    reading = {"label_threshold": args.label_threshold, "on_missing": args.on_missing}
    multiple = 2 ** max(args.depth or [5])  # OSCD and AirChange crops fit the deepest network
    train, val = load_datasets(args.data, args.batch_size, args.crop_size, args.seed, multiple,
                               **reading)  # fmt: skip
    project_dir = Path(args.directory) / args.project_name
    settings = _settings(args, hypermodel_from_args(args, in_channels=train.channels))
    _check_settings(project_dir, settings, args.overwrite)
    strategy = trial_strategy(args.distribute, configure_devices(args.gpus, chief=role == "chief"))
    resolve_precision(args.precision, verbose=True)
    print(f"Data: {len(train.pairs)} training pairs, {len(val.pairs)} validation pairs")
    # Warned now, before the search, when the validation split holds no change to score.
    monitor = validation_monitor(val, progress=sys.stderr.isatty())
    hypermodel = _measure(args, train)
    keras.utils.set_random_seed(args.seed)
    overwrite = _overwrite_of(role, args.overwrite)
    tuner = make_tuner(
        args.tuner,
        hypermodel,
        max_trials=args.max_trials,
        max_epochs=args.max_epochs,
        hyperband_factor=args.hyperband_factor,
        executions_per_trial=args.executions_per_trial,
        max_model_size=args.max_model_size,
        directory=args.directory,
        project_name=args.project_name,
        overwrite=overwrite,
        seed=args.seed,
        distribution_strategy=strategy,
    )
    if role != "worker":
        write_text(project_dir / SETTINGS_NAME, json.dumps(settings, indent=2) + "\n")
        _print_start(tuner, hypermodel, project_dir)
    # Keras Tuner gives this callback a run per trial and adds tensorboard's HParams
    # KerasCallback beside it; the hypermodel adds the mask images.
    board = keras.callbacks.TensorBoard(str(project_dir / TENSORBOARD_DIR), write_graph=False)
    verbose = 1 if sys.stdout.isatty() else 2
    tuner.search(
        train, validation_data=val, epochs=args.max_epochs, callbacks=[board], verbose=verbose
    )
    if role == "worker":
        print(f"Worker {tuner.tuner_id} finished: the chief prints the summary")
        return None
    choose = {"choose": args.choose_threshold, "monitor": monitor}
    return _report(tuner, hypermodel, project_dir, args.top, (train, val), choose)


def _overwrite_of(role: str | None, overwrite: bool) -> bool:
    """``--overwrite`` as this process applies it, saying its part in a distributed search."""
    if role == "worker" and overwrite:
        # A worker deleting the shared project would wipe the chief's state.
        print("Note: --overwrite is applied by the chief only; this worker ignores it")
        overwrite = False
    if role:
        print(
            f"Distributed search: {os.environ['KERASTUNER_TUNER_ID']} ({role}), oracle at "
            f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
        )
    return overwrite


def _report(
    tuner: kt.Tuner,
    hypermodel: ChangeHyperModel,
    project_dir: Path,
    top: int,
    splits: tuple[PairedImageDataset, PairedImageDataset],
    choose: dict,
) -> list[TrialSummary]:
    """Print the best trials and export the best model (`export_best`, with `choose`)."""
    summaries = summarize_trials(tuner, hypermodel)
    failed = [t for t in tuner.oracle.trials.values() if t.status != COMPLETED]
    if not summaries:
        raise TrainingError(
            f"no trial completed in {project_dir} ({len(failed)} failed; the reasons are "
            "printed above)"
        )
    shown = summaries[:top]
    print()
    print(f"Top {len(shown)} of {len(summaries)} completed trials by {MONITOR} ({project_dir}):")
    print(format_table(shown))
    if failed:
        print(f"{len(failed)} trial(s) did not complete: " + ", ".join(t.trial_id for t in failed))
    hps_path, model_path = export_best(tuner, summaries[0], project_dir, *splits, **choose)
    print(f"Best hyperparameters: {hps_path}")
    print(f"Best model (trial {summaries[0].trial_id}): {model_path}")
    board = project_dir / TENSORBOARD_DIR
    print(f"TensorBoard (scalars, mask images, HParams): tensorboard --logdir {board}")
    return summaries


def _print_start(tuner: kt.Tuner, hypermodel: ChangeHyperModel, project_dir: Path) -> None:
    trials = tuner.oracle.trials.values()
    done = sum(t.status == COMPLETED for t in trials)
    if trials:
        unfinished = [t.trial_id for t in trials if t.status == kt.engine.trial.TrialStatus.RUNNING]
        again = f"; interrupted trial(s) {', '.join(unfinished)} run again" if unfinished else ""
        print(f"Resuming the search in {project_dir}: {done} trial(s) finished{again}")
    else:
        print(f"Starting a search in {project_dir}")
    print("Search space:")
    for name, value in hypermodel.space().items():
        print(f"  {name}: {value}")


def run(args: argparse.Namespace) -> int:
    """Carry out the parsed search command; returns the exit status.

    0 on success, 2 for bad data or settings (the message names the folder or flag), 1 when
    the tuner gave up after consecutive failed trials.
    """
    try:
        run_search(args)
    except SiameseCDError as error:
        print(f"search: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        if "consecutive failures" not in str(error):
            raise
        print(f"search: error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python tuning/search.py``; returns the exit status (see `run`)."""
    return run(build_parser().parse_args(argv))
