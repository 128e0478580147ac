"""A training killed with SIGKILL and run again ends exactly where an uninterrupted one does;
Ctrl-C says what was kept; a resume with other settings is refused, naming them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from siamese_cd.data.synthetic.generate import make_synthetic_dataset
from siamese_cd.training.resume import KILL_VARIABLE

EPOCHS = 3


def _command(data, logdir):
    return [
        sys.executable, "-m", "siamese_cd.cli", "train", str(data), "--epochs", str(EPOCHS),
        "--batch-size", "4", "--depth", "2", "--filters", "2", "--crop-size", "16",
        "--logdir", str(logdir), "--seed", "3",
    ]  # fmt: skip


def _run(command, **env):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **env}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


def _epoch_lines(stdout: str) -> dict[int, str]:
    """Epoch number -> its metrics line without the timings."""
    lines = stdout.splitlines()
    out = {}
    for k, line in enumerate(lines):
        match = re.match(r"Epoch (\d+)/\d+", line)
        if match and k + 1 < len(lines):
            out[int(match.group(1))] = lines[k + 1].split("step - ", 1)[-1]
    return out


def _weights(path):
    import keras

    import siamese_cd.models.siamese  # noqa: F401 - registers the model class for loading

    return keras.saving.load_model(path).get_weights()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_gives_bit_identical_weights_and_scores(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", train=12, val=4, test=4, size=32,
                                  progress=False)  # fmt: skip
    straight = _run(_command(data, tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]

    resumed_dir = tmp_path / "resumed"
    killed = _run(_command(data, resumed_dir), **{KILL_VARIABLE: "2:2"})  # epoch 2, batch 3
    assert killed.returncode == -signal.SIGKILL
    assert (resumed_dir / "backup" / "training_metadata.json").is_file()
    rerun = _run(_command(data, resumed_dir))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Resuming from the last finished epoch" in rerun.stdout
    assert not (resumed_dir / "backup").exists()  # removed once training completed

    # The resumed run trained epochs 2 and 3 exactly as the uninterrupted run did ...
    straight_epochs, rerun_epochs = _epoch_lines(straight.stdout), _epoch_lines(rerun.stdout)
    assert sorted(rerun_epochs) == [2, 3]
    for epoch in (2, 3):
        assert rerun_epochs[epoch] == straight_epochs[epoch]
    # ... and ends with the same best model, bit for bit, and the same test scores.
    first = _weights(tmp_path / "straight" / "model.keras")
    second = _weights(resumed_dir / "model.keras")
    assert len(first) == len(second)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    scores = [re.search(r"^Test split.*$", out.stdout, re.MULTILINE).group(0)
              for out in (straight, rerun)]  # fmt: skip
    assert scores[0] == scores[1]
    assert (resumed_dir / "model.best.json").read_text() == (
        tmp_path / "straight" / "model.best.json"
    ).read_text()


# -- Ctrl-C, and a resume with other settings (in this process) -------------------------------


TINY = ["--batch-size", "2", "--depth", "2", "--filters", "2", "--precision", "float32"]
TINY += ["--no-choose-threshold", "--seed", "0"]


@pytest.fixture
def interrupted(tmp_path, monkeypatch, capsys):
    """``(data, logdir, argv)`` of a `train` stopped by Ctrl-C early in epoch 2, and its
    standard error."""
    from siamese_cd.cli import main
    from siamese_cd.training.resume import TrainingBackup
    from tests.fakes import make_split

    make_split(tmp_path / "data" / "train", count=4, seed=0)
    make_split(tmp_path / "data" / "val", count=2, seed=1)
    logdir = tmp_path / "run"
    argv = ["train", str(tmp_path / "data"), *TINY, "--logdir", str(logdir)]
    original = TrainingBackup.on_train_batch_begin

    def ctrl_c_in_epoch_2(self, batch, logs=None):
        if self._epoch == 1:
            raise KeyboardInterrupt
        original(self, batch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(TrainingBackup, "on_train_batch_begin", ctrl_c_in_epoch_2)
        code = main([*argv, "--epochs", "2"])
    assert code == 130
    return logdir, argv, capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_says_the_last_epoch_is_kept_and_the_same_command_resumes(interrupted, capsys):
    from siamese_cd.cli import main

    logdir, argv, error = interrupted
    backup = logdir / "backup"
    assert (
        f"siamese-cd train: training interrupted; the last finished epoch (1) is kept in "
        f"{backup}: run the same command again to resume from it"
    ) in error
    assert "Traceback" not in error and "KeyboardInterrupt" not in error
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    # Rerun, with more epochs than before: the epochs may change on resume.
    assert main([*argv, "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "Resuming from the last finished epoch" in out
    assert "Epoch 1/3" not in out and "Epoch 2/3" in out and "Epoch 3/3" in out
    assert not backup.exists() and (logdir / "model.keras").is_file()


@pytest.mark.slow
def test_resuming_with_other_settings_is_refused_naming_each_difference(interrupted, capsys):
    from siamese_cd.cli import main

    logdir, argv, _ = interrupted
    backup = logdir / "backup"
    state = (backup / "training_metadata.json").read_text()
    changed = [*argv, "--epochs", "2", "--filters", "4", "--lr", "0.01", "--no-augment"]
    assert main(changed) == 2
    error = capsys.readouterr().err
    assert f"siamese-cd train: error: {backup} holds a training backup made with other " in error
    assert "--filters: backup 2, now 4" in error and "--lr: backup not set, now 0.01" in error
    assert "augment (--no-augment): backup True, now False" in error
    assert "--epochs" not in error  # not a setting a resume must keep
    assert f"Rerun with the original settings to resume it, or delete {backup}" in error
    assert "--overwrite" in error and "Traceback" not in error
    assert (backup / "training_metadata.json").read_text() == state  # left as it was
    # --overwrite starts again from the first epoch, without the backup.
    assert main([*changed, "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "Resuming" not in out and "Epoch 1/2" in out and not backup.exists()
