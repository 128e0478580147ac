"""A training's log folder: a finished run is never overwritten silently, and a folder that
cannot be written is named before any data is read."""

from __future__ import annotations

import errno
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator

from siamese_cd import atomic
from siamese_cd.cli import main
from siamese_cd.training.run_folder import event_files
from tests.fakes import make_split

TINY = ["--batch-size", "2", "--depth", "2", "--filters", "2", "--precision", "float32"]
TINY += ["--no-choose-threshold"]


@pytest.fixture
def data(tmp_path):
    make_split(tmp_path / "data" / "train", count=4, seed=0)
    make_split(tmp_path / "data" / "val", count=2, seed=1)
    return tmp_path / "data"


def _steps(run_dir, tag="epoch_loss") -> list[int]:
    events = EventAccumulator(str(run_dir), size_guidance={TENSORS: 0})
    events.Reload()
    return [event.step for event in events.Tensors(tag)]


@pytest.mark.slow
def test_a_finished_run_is_refused_and_replaced_only_with_overwrite(data, tmp_path, capsys):
    logdir = tmp_path / "run"
    args = ["train", str(data), *TINY, "--logdir", str(logdir)]
    assert main([*args, "--epochs", "1"]) == 0
    model = logdir / "model.keras"
    first_model, first_events = model.read_bytes(), event_files(logdir)
    assert first_events and not (logdir / "backup").exists()
    capsys.readouterr()

    # Refused before the data is read: a data folder that does not exist is not looked at.
    missing = tmp_path / "no-such-data"
    assert main(["train", str(missing), *TINY, "--logdir", str(logdir), "--epochs", "2"]) == 2
    error = capsys.readouterr().err
    assert f"siamese-cd train: error: {logdir} holds a finished run (the model {model}" in error
    assert "pass --overwrite to replace it, or choose another --logdir" in error
    assert "TensorBoard event file(s)" in error and str(missing) not in error
    assert model.read_bytes() == first_model and event_files(logdir) == first_events

    # --overwrite: the old run's events and model are gone, so TensorBoard shows one run.
    assert main([*args, "--epochs", "2", "--overwrite"]) == 0
    assert f"Overwriting the run in {logdir}: removed" in capsys.readouterr().out
    assert not set(first_events) & set(event_files(logdir))
    for run in ("train", "validation"):
        assert len(list((logdir / run).glob("events.out.tfevents.*"))) == 1
        assert _steps(logdir / run) == [0, 1]  # mixed runs would show step 0 twice
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1  # one HParams session
    assert model.read_bytes() != first_model


def test_a_model_at_out_is_a_finished_run_too(data, tmp_path, capsys):
    out = tmp_path / "models" / "best.keras"
    out.parent.mkdir()
    out.write_bytes(b"the model of an earlier run")
    argv = ["train", str(data), "--logdir", str(tmp_path / "new"), "--out", str(out)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"(the model {out})" in error and "another --logdir and --out" in error
    assert out.read_bytes() == b"the model of an earlier run"


def test_unwritable_outputs_fail_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    # The tests run as root, for whom a chmod-ed read-only folder is still writable. A
    # regular file where a folder should be fails for root too, so it stands for a folder
    # that cannot be written; a read-only file system is simulated below.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    data = tmp_path / "no-such-data"  # never read: the checks come first

    def fails(*argv):
        assert main(list(argv)) == 2
        error = capsys.readouterr().err
        assert "Traceback" not in error and str(data) not in error
        return error

    error = fails("train", str(data), "--logdir", str(blocker / "run"))
    assert f"{blocker / 'run'}: cannot create the folder for the logs (Not a directory)" in error
    folder = tmp_path / "model.keras"
    folder.mkdir()
    error = fails("train", str(data), "--logdir", str(tmp_path / "run"), "--out", str(folder))
    assert f"{folder}: is a folder, so the model file cannot be written there" in error
    error = fails(
        "train", str(data), "--logdir", str(tmp_path / "r"), "--out", f"{blocker}/m.keras"
    )
    assert f"{blocker}: is a file, not a folder, so the model file cannot go there" in error
    # The cluster path checks the same before the cluster forms (TF_CONFIG of one worker).
    cluster = {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    error = fails("train", str(data), "--distribute", "multi-worker", "--logdir", f"{blocker}/x")
    assert f"{blocker / 'x'}: cannot create the folder for the logs (Not a directory)" in error
    monkeypatch.delenv("TF_CONFIG")
    error = fails("reproduce", "airchange", str(data), "--log-dir", str(blocker / "logs"))
    run = blocker / "logs" / "reproduce-airchange-rgb"
    assert f"{run}: cannot create the folder for the models and scores (Not a dir" in error

    # A folder on a read-only file system: the probe file cannot be created in it.
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(atomic, "open", read_only, raising=False)
    error = fails("train", str(data), "--logdir", str(tmp_path / "ro"))
    assert f"{tmp_path / 'ro'}: cannot write the logs there (Read-only file system)" in error
