"""A training's log folder: writable, one run per folder, resumed only as it was made.

`train_on_folder` (every path: one device, mirrored, each worker of a cluster) calls, before
it reads any data:

- `check_outputs`: the log folder and the model file can be written (a probe file is
  written and removed), so a read-only folder or an ``--out`` naming a folder fails at once,
  not when the first epoch is saved;
- `check_run_folder`: a folder holding a **finished** run (its model file, or TensorBoard
  event files, and no backup in progress) is refused, since training into it would replace
  the better model with the first epoch of the new one and mix two runs in TensorBoard.
  ``overwrite=True`` (``--overwrite``) removes that run (its event files, model, best-score
  record and any backup) first. A killed run, whose backup is in ``LOGDIR/backup``, is not
  finished: it resumes, unless its backup was made with other settings
  (`siamese_cd.training.resume.check_settings`, over `RESUME_SETTINGS`).

`start_run` then records the settings in the backup folder as training starts; the folder
exists from then until training completes, which is what marks a run in progress.

Example:
    >>> import tempfile
    >>> from siamese_cd.training.settings import TrainSettings
    >>> folder = Path(tempfile.mkdtemp())
    >>> settings = TrainSettings(epochs=1, log_dir=folder / "run", precision="float32")
    >>> check_outputs(settings)  # creates the log folder
    >>> check_run_folder(settings, mode="none")  # nothing there yet
    >>> (folder / "run" / "model.keras").write_bytes(b"a finished run's model")
    22
    >>> try:
    ...     check_run_folder(settings, mode="none")
    ... except RunFolderError as error:
    ...     print(str(error).replace(str(folder), "FOLDER"))  # doctest: +ELLIPSIS
    FOLDER/run holds a finished run (the model FOLDER/run/model.keras); pass overwrite=True ...
"""

from __future__ import annotations

import shutil
from pathlib import Path

from siamese_cd.atomic import check_writable_file, check_writable_folder
from siamese_cd.errors import RunFolderError
from siamese_cd.hints import option_hint
from siamese_cd.training.resume import check_settings, record_settings

# The TensorBoard runs a training writes under its log folder, besides the folder itself
# (its HParams session): `siamese_cd.training.pipeline.build_callbacks`.
RUN_FOLDERS = ("train", "validation", "images", "test")
EVENT_FILES = "events.out.tfevents.*"
# The settings a backup must be resumed with: those of the model, the data and the recipe,
# each with the option that sets it, as the message names it. The epochs are not among
# them: raising --epochs to train a killed (or any resumed) run longer is legitimate. Nor
# are early stopping and choosing the threshold, which only decide when and how it ends.
RESUME_SETTINGS = {
    "variant": "--variant",
    "depth": "--depth",
    "filters": "--filters",
    "dropout": "--dropout",
    "init": "--init",
    "recipe": "--recipe",
    "preprocessing": "--preprocessing",
    "loss": "--loss",
    "learning_rate": "--lr",
    "batch_size": "--batch-size",
    "crop_size": "--crop-size",
    "augment": "augment (--no-augment)",
    "seed": "--seed",
    "precision": "--precision",
    "distribute": "--distribute",
    "label_threshold": "--label-threshold",
    "on_missing": "--on-missing",
    "bands": "--bands",
    "out": "--out",
}


def check_outputs(settings) -> None:
    """Create the log folder and check it and the model file's folder can be written.

    Raises:
        FileWriteError: naming the path and the cause (a file in the way, no permission, a
            read-only file system), or an ``out`` that is a folder.
    """
    check_writable_folder(settings.log_dir, "logs")
    check_writable_file(settings.model_path, "model file")


def event_files(log_dir: str | Path) -> list[Path]:
    """The TensorBoard event files of the run in `log_dir` (not of runs in sub-folders)."""
    log_dir = Path(log_dir)
    files = []
    for folder in (log_dir, *(log_dir / name for name in RUN_FOLDERS)):
        files += sorted(p for p in folder.glob(EVENT_FILES) if p.is_file())
    return files


def finished_run(settings) -> list[Path]:
    """The files of a finished run in the way of `settings`: its model and event files.

    Empty when there are none, or when a backup is in progress (a killed run, resumed).
    """
    if Path(settings.backup_dir).is_dir():
        return []
    model = settings.model_path
    return ([model] if model.is_file() else []) + event_files(settings.log_dir)


def run_settings(settings, mode: str) -> dict:
    """The `RESUME_SETTINGS` of `settings`, as the backup records them.

    ``precision="auto"`` is recorded as the precision it stands for here, and the
    distribution as the resolved `mode`, so a resume elsewhere cannot silently change them.
    """
    from siamese_cd.training.precision import choose_precision

    values = {name: getattr(settings, name) for name in RESUME_SETTINGS}
    if values["precision"] == "auto":
        values["precision"] = choose_precision()[0]
    values["distribute"] = mode
    values["out"] = str(settings.model_path)
    return values


def check_run_folder(settings, mode: str, clear: bool = True) -> None:
    """Refuse a finished run or a backup of other settings; with ``overwrite``, remove them.

    Args:
        settings: the run's `siamese_cd.training.settings.TrainSettings`.
        mode: the resolved distribution (`siamese_cd.distributed.strategy.resolve_mode`).
        clear: with ``settings.overwrite``, remove the old run here (False on the workers of
            a cluster other than the chief, which alone writes the shared folder).

    Raises:
        RunFolderError: naming the folder, what it holds and ``--overwrite``.
    """
    if settings.overwrite:
        if clear:
            clear_run(settings)
        return
    found = finished_run(settings)
    if found:
        raise RunFolderError(_finished_message(settings, found))
    check_settings(settings.backup_dir, run_settings(settings, mode), RESUME_SETTINGS)


def _finished_message(settings, found: list[Path]) -> str:
    model = settings.model_path
    events = [path for path in found if path != model]
    held = [f"the model {model}"] if model in found else []
    held += [f"{len(events)} TensorBoard event file(s)"] if events else []
    other = option_hint("log_dir", "--logdir")
    if model in found and settings.out is not None:
        other += " and " + option_hint("out", "--out")
    return (
        f"{settings.log_dir} holds a finished run ({' and '.join(held)}); pass "
        f"{option_hint('overwrite=True', '--overwrite')} to replace it, or choose another "
        f"{other}"
    )


def clear_run(settings) -> None:
    """Remove the run `settings` would write over: event files, model, record and backup."""
    model = settings.model_path
    removed = event_files(settings.log_dir)
    removed += [path for path in (model, model.with_suffix(".best.json")) if path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    backup = Path(settings.backup_dir)
    had_backup = backup.is_dir()
    if had_backup:
        shutil.rmtree(backup)
    if removed or had_backup:
        print(
            f"Overwriting the run in {settings.log_dir}: removed {len(removed)} file(s) of "
            f"the previous run" + (f" and its backup {backup}" if had_backup else "")
        )


def start_run(settings, mode: str) -> None:
    """Record the run's settings in its backup folder, which marks a run in progress.

    Raises:
        FileWriteError: if the record cannot be written.
    """
    record_settings(settings.backup_dir, run_settings(settings, mode))
