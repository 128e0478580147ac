"""A full disk while saving the model or the backup keeps the previous files whole.

Root only: the test mounts a small tmpfs and fills it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

import numpy as np
import pytest

from siamese_cd.callbacks import BestCheckpoint
from siamese_cd.errors import FileWriteError
from siamese_cd.models.siamese import SiameseChangeModel
from siamese_cd.training.resume import STATE_NAME, TrainingBackup


@contextlib.contextmanager
def small_disk(folder, size="2m"):
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder):
    """Write a file until the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                handle.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0")


def tiny_model():
    model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    model.compile()
    x = np.zeros((4, 16, 16, 3), np.uint8)
    y = np.zeros((4, 16, 16, 1), np.float32)
    y[:, :4] = 1
    return model, (x, x), y


@pytest.mark.slow
def test_full_disk_keeps_the_previous_model_and_backup(tmp_path):
    import keras

    with small_disk(tmp_path / "disk") as disk:
        model, x, y = tiny_model()
        checkpoint = BestCheckpoint(disk / "model.keras")
        backup = TrainingBackup(disk / "backup", checkpoint=checkpoint)
        model.fit(x, y, epochs=1, batch_size=2, validation_data=(x, y), verbose=0,
                  callbacks=[checkpoint, backup])  # fmt: skip
        saved = [w.copy() for w in model.get_weights()]
        assert (disk / "model.keras").is_file() and backup.finished_epochs() == 1
        fill(disk)

        model.set_weights([w + 1 for w in saved])
        with pytest.raises(FileWriteError) as error:
            checkpoint.on_epoch_end(1, {"loss": 0.5, "val_f1": 2.0})  # better: saves
        assert str(disk / "model.keras") in str(error.value)
        assert "No space left on device" in str(error.value)
        with pytest.raises(FileWriteError) as error:
            backup.save(2)
        assert str(disk / "backup" / "epoch-0002.weights.h5") in str(error.value)
        assert "No space left on device" in str(error.value)

        # The earlier files survive, load, and hold the earlier weights; no stray files.
        loaded = keras.saving.load_model(disk / "model.keras")
        assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), saved))
        state = json.loads((disk / "backup" / STATE_NAME).read_text())
        assert state["epoch"] == 1 and state["best"]["epoch"] == 1
        model.load_weights(disk / "backup" / state["weights"])
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), saved))
        assert json.loads((disk / "model.best.json").read_text())["epoch"] == 1
        names = sorted(p.name for p in disk.rglob("*"))
        assert names == sorted(["backup", STATE_NAME, "epoch-0001.weights.h5", "filler",
                                "model.keras", "model.best.json"])  # fmt: skip


@pytest.mark.slow
def test_full_disk_in_the_cli_exits_2_naming_the_file(tmp_path, capsys):
    from siamese_cd.cli import main
    from siamese_cd.data.synthetic.generate import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", train=1, val=1, test=2, size=32,
                                  progress=False)  # fmt: skip
    model, _, _ = tiny_model()
    model.save(tmp_path / "m.keras")
    with small_disk(tmp_path / "disk") as disk:
        (disk / "scores.json").write_text("previous\n")
        fill(disk)
        status = main(["evaluate", str(tmp_path / "m.keras"), str(data),
                       "--json", str(disk / "scores.json")])  # fmt: skip
        assert status == 2
        error = capsys.readouterr().err
        assert f"{disk / 'scores.json'}: cannot write (No space left on device)" in error
        assert (disk / "scores.json").read_text() == "previous\n"
