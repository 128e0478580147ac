"""siamese-cd reproduce on generated OSCD and AirChange trees, quick mode."""

import json

import pytest

from siamese_cd.cli import main
from siamese_cd.data.sampling.windows import patches_per_scene
from siamese_cd.errors import ConfigError
from siamese_cd.training.reproduce import PUBLISHED, ReproduceSettings
from tests.fake_datasets import write_airchange, write_oscd


def test_published_values_and_settings():
    assert PUBLISHED[("oscd", "all")] == {"ef": 56.91, "diff": 57.92, "conc": 51.36}
    assert PUBLISHED[("oscd", "rgb")] == {"ef": 48.89, "diff": 48.86}
    settings = ReproduceSettings("oscd", quick=True)
    assert (settings.epochs, settings.depth, settings.filters) == (1, 2, 4)
    assert ReproduceSettings("airchange").epochs == 50
    with pytest.raises(ConfigError, match="RGB"):
        ReproduceSettings("airchange", bands="all")
    assert patches_per_scene([[96, 96]], 96) == 1


@pytest.mark.slow
def test_reproduce_oscd_quick_prints_the_table(tmp_path, capsys):
    pytest.importorskip("rasterio")
    data = write_oscd(tmp_path / "oscd", train=["a", "b"], test=["c"])
    logs = tmp_path / "logs"
    argv = ["reproduce", "oscd", str(data), "--quick", "--variant", "diff"]
    assert main([*argv, "--bands", "all", "--log-dir", str(logs)]) == 0
    out = capsys.readouterr().out
    assert "FC-Siam-diff" in out and "57.92 (secondary source)" in out
    assert "held-out train cities b" in out  # test labels are absent in the fake download
    run = logs / "reproduce-oscd-all" / "diff"
    assert (run / "model.keras").is_file() and (run / "history.csv").is_file()
    assert json.loads((run / "row.json").read_text())["published_f1"] == 57.92


@pytest.mark.slow
def test_reproduce_airchange_quick_prints_the_table(tmp_path, capsys):
    data = write_airchange(tmp_path / "air", scenes=(("Szada", 2), ("Tiszadob", 3)))
    logs = tmp_path / "logs"
    argv = ["reproduce", "airchange", str(data), "--quick", "--variant", "ef"]
    assert main([*argv, "--log-dir", str(logs)]) == 0
    out = capsys.readouterr().out
    assert "FC-EF" in out and "Szada/1 and Tiszadob/3" in out
    scores = json.loads((logs / "reproduce-airchange-rgb" / "ef" / "scores.json").read_text())
    assert scores["protocol"]["pairs"] == 2
    assert sum(scores["counts"].values()) == 2 * 448 * 784
    # The training pipeline's callbacks: a TensorBoard run and an HParams session per variant.
    run = logs / "reproduce-airchange-rgb" / "ef"
    assert len(list((run / "train").glob("events.out.tfevents.*"))) == 1
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert main([*argv, "--log-dir", str(logs)]) == 0  # a rerun replaces the variant's run
    assert len(list((run / "train").glob("events.out.tfevents.*"))) == 1
    assert "Overwriting the run in" in capsys.readouterr().out
