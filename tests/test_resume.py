"""A training killed with SIGKILL and run again ends exactly where an uninterrupted one does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from siamese_cd.data.synthetic import make_synthetic_dataset
from siamese_cd.resume import KILL_VARIABLE

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
