"""Keras Tuner search: the hypermodel's space, the tuners, and `tuning/search.py` end to end."""

import argparse
import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest
from keras_tuner.src.engine.tuner import maybe_compute_model_size
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from siamese_cd import PairedImageDataset, SiameseChangeModel
from siamese_cd.callbacks import MaskImageLogger
from siamese_cd.data.pipeline.stats import change_fraction
from siamese_cd.data.synthetic.generate import make_synthetic_dataset
from siamese_cd.errors import ConfigError
from siamese_cd.models import recipe
from siamese_cd.models.losses import pos_weight_from_fraction
from siamese_cd.models.preprocessing import preprocessing_config
from siamese_cd.training.precision import dtype_policy
from siamese_cd.tuning import (
    ChangeHyperModel,
    FatalConfigError,
    count_params,
    distributed_role,
    make_tuner,
)
from siamese_cd.tuning.search import (
    add_arguments,
    build_parser,
    hypermodel_from_args,
    load_datasets,
    main,
)

REPO = Path(__file__).parents[1]
SCRIPT = REPO / "tuning" / "search.py"
PACKAGE = REPO / "siamese_cd" / "tuning"
COMPLETED = kt.engine.trial.TrialStatus.COMPLETED

# A tiny space: widths 2-16, depth 2-3, every variant and loss, 32x32 images.
TINY_FLAGS = [
    "--max-epochs", "2", "--batch-size", "8", "--depth", "2", "3", "--filters", "2", "4",
    "--image-samples", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuning_data")
    return make_synthetic_dataset(out, train=16, val=8, test=0, size=32, seed=0, progress=False)


@pytest.fixture(scope="module")
def splits(synthetic):
    train = PairedImageDataset(synthetic / "train", batch_size=8, shuffle=True, seed=0)
    val = PairedImageDataset(synthetic / "val", batch_size=8)
    return train, val


def declared(hypermodel, values=None):
    """A `HyperParameters` after one build, optionally rebuilt with some values set."""
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    if values:
        hp.values.update(values)
        hp.ensure_active_values()
        model = hypermodel.build(hp)
        return hp, model
    return hp, None


def by_name(hp):
    return {p.name: p for p in hp.space}


# -- the hypermodel ----------------------------------------------------------------------------


def test_the_package_exports_the_search_pieces_and_leaves_the_command_in_its_module():
    import siamese_cd.tuning as tuning
    import siamese_cd.tuning.search as search

    command = {"add_arguments", "build_parser", "hypermodel_from_args", "load_datasets", "main",
               "run", "run_search"}  # fmt: skip
    assert not command & set(tuning.__all__)
    assert not [name for name in command if hasattr(tuning, name)]
    assert all(callable(getattr(search, name)) for name in command)  # still importable there
    used = {"ChangeHyperModel", "make_tuner", "Hyperband", "RandomSearch", "BayesianOptimization",
            "summarize_trials", "format_table", "export_best", "TrialSummary"}  # fmt: skip
    assert used <= set(tuning.__all__)
    assert all(getattr(tuning, name) is not None for name in tuning.__all__)


def test_default_space_lists_every_hyperparameter():
    hp, _ = declared(ChangeHyperModel())
    space = by_name(hp)
    assert list(space) == [
        "variant", "depth", "filters_1", "filters_2", "filters_3", "filters_4", "filters_5",
        "convs_per_level", "dropout", "learning_rate", "loss",
    ]  # fmt: skip
    assert space["variant"].values == ["diff", "conc", "ef"]
    assert (space["depth"].min_value, space["depth"].max_value) == (2, 5)
    assert space["filters_1"].values == [8, 16, 32]
    assert space["filters_3"].values == [32, 64, 128]  # doubled per level
    assert (space["convs_per_level"].min_value, space["convs_per_level"].max_value) == (2, 3)
    assert (space["dropout"].min_value, space["dropout"].max_value) == (0.0, 0.3)
    lr = space["learning_rate"]
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")
    assert space["loss"].values == ["bce", "bce+dice"]


def test_levels_below_the_depth_are_conditional_and_inactive():
    hypermodel = ChangeHyperModel(filters=(2, 4))
    hp, _ = declared(hypermodel)
    parents = {p.name: [(c.name, c.values) for c in p.conditions] for p in hp.space if p.conditions}
    assert parents == {
        "filters_3": [("depth", [3, 4, 5])],
        "filters_4": [("depth", [4, 5])],
        "filters_5": [("depth", [5])],
    }
    hp, model = declared(hypermodel, {"depth": 3, "filters_3": 16})
    assert hp.is_active("filters_3") and not hp.is_active("filters_4")
    assert "filters_4" not in hp.values and "filters_5" not in hp.values
    assert model.depth == 3 and model.widths == [hp["filters_1"], hp["filters_2"], 16]

    hp, model = declared(hypermodel, {"depth": 2})
    assert sorted(k for k in hp.values if k.startswith("filters")) == ["filters_1", "filters_2"]
    assert model.depth == 2 and len(model.widths) == 2


def test_tuner_start_up_discovers_every_conditional_level(tmp_path):
    tuner = make_tuner(
        "random", ChangeHyperModel(filters=2), max_trials=1, directory=tmp_path, project_name="p"
    )
    names = [p.name for p in tuner.oracle.get_space().space]
    assert {"filters_3", "filters_4", "filters_5"} <= set(names)


def test_ranges_are_narrowed_or_fixed_by_the_constructor():
    hypermodel = ChangeHyperModel(
        variant=("diff", "conc"),
        depth=(3, 4),
        filters=(4,),
        convs_per_level=2,
        dropout=0.1,
        learning_rate=(1e-3, 3e-3),
        loss="bce+dice",
    )
    hp, _ = declared(hypermodel)
    space = by_name(hp)
    assert space["variant"].values == ["diff", "conc"]
    assert (space["depth"].min_value, space["depth"].max_value) == (3, 4)
    assert not space["filters_3"].conditions  # every allowed depth reaches level 3
    assert [c.values for c in space["filters_4"].conditions] == [[4]]
    fixed = {"filters_1": 4, "filters_2": 8, "filters_3": 16, "convs_per_level": 2,
             "dropout": 0.1, "loss": "bce+dice"}  # fmt: skip
    for name, value in fixed.items():
        assert isinstance(space[name], kt.engine.hyperparameters.Fixed), name
        assert hp[name] == value
    assert (space["learning_rate"].min_value, space["learning_rate"].max_value) == (1e-3, 3e-3)


def test_growth_mode_replaces_per_level_widths():
    hypermodel = ChangeHyperModel(width_mode="growth", filters=(4, 6), growth=(1.5, 2.0))
    hp, model = declared(hypermodel, {"depth": 4, "filters": 6, "growth": 1.5})
    assert not any(name.startswith("filters_") for name in by_name(hp))
    assert model.widths == [6, 9, 14, 20]  # round(6 * 1.5**k)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": (1, 3)}, "depth"),
        ({"depth": (5, 3)}, "above the maximum"),
        ({"depth": (2, 7)}, "depth"),
        ({"filters": (0, 8)}, "filters"),
        ({"convs_per_level": 1}, "at least 2"),
        ({"dropout": (0.0, 1.0)}, "dropout"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"loss": ("bce", "mse")}, "mse"),
        ({"variant": "siam"}, "siam"),
        ({"width_mode": "free"}, "width_mode"),
        ({"depth": (2, 3, 4)}, "one value"),
    ],
)
def test_bad_ranges_raise_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ChangeHyperModel(**kwargs)


def test_build_returns_a_compiled_built_model_with_the_trial_config():
    hypermodel = ChangeHyperModel(variant="conc", depth=2, filters=(4, 8), loss="bce+dice")
    hp, model = declared(hypermodel, {"filters_1": 8, "filters_2": 8, "learning_rate": 2e-3})
    assert isinstance(model, SiameseChangeModel) and model.built
    config = model.backbone.get_config()  # the task's config holds the backbone's
    assert {k: config[k] for k in ("variant", "depth", "filters", "convs_per_level")} == {
        "variant": "conc",
        "depth": 2,
        "filters": [8, 8],
        "convs_per_level": [hp["convs_per_level"]] * 2,
    }
    assert config["dropout"] == pytest.approx(hp["dropout"])
    assert model.compiled
    # The recipe's optimizer at the trial's initial learning rate, decayed per epoch.
    schedule = recipe.epoch_schedule(model.optimizer)
    assert schedule.initial_learning_rate == pytest.approx(2e-3)
    assert schedule.decay_rate == recipe.LR_DECAY_PER_EPOCH
    assert model.optimizer.weight_decay == pytest.approx(recipe.WEIGHT_DECAY)
    assert type(model.loss).__name__ == "SumOfLosses"
    # Weights exist before any call, so Keras Tuner can size and reload the model.
    # The size the summary reports is the one max_model_size is checked against.
    assert maybe_compute_model_size(model) == count_params(model) > 0


def test_a_given_pos_weight_is_compiled_into_every_model():
    hypermodel = ChangeHyperModel(
        depth=2, filters=2, loss=("bce", "bce+dice"), pos_weight=3.0, preprocessing="unit"
    )
    _, single = declared(hypermodel, {"loss": "bce"})
    _, summed = declared(hypermodel, {"loss": "bce+dice"})
    assert single.loss.pos_weight == 3.0 and not single.loss.auto_pending
    assert [getattr(part, "pos_weight", None) for part in summed.loss.losses] == [3.0, None]
    masks = np.zeros((1, 32, 32, 1), np.float32)
    images = np.zeros((1, 32, 32, 3), np.float32)
    scores = single.evaluate((images, images), masks, verbose=0, return_dict=True)
    assert np.isfinite(scores["loss"])  # no fit needed first
    # By default SiameseChangeModel.fit reads it from the training data.
    assert ChangeHyperModel(depth=2, loss="bce").build(kt.HyperParameters()).loss.auto_pending


def test_a_measured_preprocessing_config_goes_into_every_model(splits):
    train, _ = splits
    config = preprocessing_config(train, "standardize", progress=False)
    hypermodel = ChangeHyperModel(depth=2, filters=2, variant=("diff", "ef"), preprocessing=config)
    for variant in ("diff", "ef"):
        _, model = declared(hypermodel, {"variant": variant})
        assert model.preprocessor.scaling == "standardize" and not model.preprocessor.pending
        np.testing.assert_allclose(model.preprocessor.mean, config["mean"], rtol=1e-6)
    assert hypermodel.space()["preprocessing"] == "standardize"
    with pytest.raises(ConfigError, match="preprocessing"):
        ChangeHyperModel(preprocessing="divide")


def test_precision_survives_clear_session():
    hypermodel = ChangeHyperModel(depth=2, filters=2, precision="float16")
    keras.backend.clear_session()  # what the tuner does before every trial
    _, model = declared(hypermodel, {"variant": "diff"})
    assert model.dtype_policy.name == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"  # never set: per model


def test_max_model_size_rejects_oversized_models(tmp_path):
    hypermodel = ChangeHyperModel(depth=3, filters=8, variant="diff", convs_per_level=2)
    _, model = declared(hypermodel, {"depth": 3})
    tuner = make_tuner(
        "random",
        hypermodel,
        max_trials=1,
        max_model_size=count_params(model) - 1,
        directory=tmp_path,
        project_name="small",
    )
    images = np.zeros((2, 32, 32, 3), np.float32)
    masks = np.zeros((2, 32, 32, 1), np.float32)
    tuner.search((images, images), masks, validation_data=((images, images), masks), epochs=1)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == kt.engine.trial.TrialStatus.FAILED
    assert f"Oversized model: {count_params(model)} parameters" in trial.message


def test_fit_without_validation_data_stops_the_search():
    hypermodel = ChangeHyperModel(depth=2, filters=2)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    images = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(FatalConfigError, match="validation_data"):
        hypermodel.fit(hp, model, (images, images), images[..., :1], epochs=1)
    assert issubclass(FatalConfigError, kt.errors.FatalError)  # the tuner re-raises it


# -- the command's pieces ----------------------------------------------------------------------


def test_cli_flags_narrow_and_fix_the_space():
    args = build_parser().parse_args(
        ["--data", "d", "--variant", "ef", "--depth", "3", "4", "--filters", "4", "8",
         "--convs-per-level", "3", "--dropout", "0.1", "0.2", "--learning-rate", "1e-3",
         "--loss", "bce"]
    )  # fmt: skip
    space = hypermodel_from_args(args).space()
    assert space["variant"] == ["ef"] and space["depth"] == [3, 4]
    assert space["filters"] == [4, 8] and space["convs_per_level"] == [3, 3]
    assert space["dropout"] == [0.1, 0.2] and space["learning_rate"] == [1e-3, 1e-3]
    assert space["loss"] == ["bce"]

    with pytest.raises(ConfigError, match="--depth: give one value"):
        hypermodel_from_args(build_parser().parse_args(["--data", "d", "--depth", "2", "3", "4"]))
    with pytest.raises(ConfigError, match="--growth applies to --width-mode growth"):
        hypermodel_from_args(build_parser().parse_args(["--data", "d", "--growth", "2"]))
    growth = build_parser().parse_args(["--data", "d", "--width-mode", "growth", "--growth", "2"])
    assert hypermodel_from_args(growth).space()["growth"] == [2.0]


def test_the_flags_fit_any_parser_and_choose_the_preprocessing(capsys):
    parser = argparse.ArgumentParser(prog="siamese-cd tune")  # as the CLI's subcommand does
    add_arguments(parser)
    args = parser.parse_args(["--data", "d"])
    assert args.preprocessing == "auto" and args.tuner == "hyperband" and args.max_epochs == 20
    args = parser.parse_args(["--data", "d", "--preprocessing", "unit"])
    assert hypermodel_from_args(args, in_channels=4).space()["preprocessing"] == "unit"
    assert hypermodel_from_args(args, in_channels=4).in_channels == 4
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d", "--preprocessing", "minmax"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d", "--loss", "mse"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d", "--max-epochs", "0"])
    assert "unknown loss 'mse'" in capsys.readouterr().err


def test_the_package_keeps_to_its_own_jobs():
    """No module over 500 lines or function over 60; no import of the CLI or training."""
    for path in sorted(PACKAGE.glob("*.py")):
        source = path.read_text()
        assert len(source.splitlines()) <= 500, path.name
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
                said_why = any(line.strip().startswith("# Over 60 lines") for line in lines)
                assert length <= 60 or said_why, f"{path.name}: {node.name} has {length} lines"
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names]
                for name in names:
                    assert not name.startswith(("siamese_cd.cli", "siamese_cd.training.run")), (
                        f"{path.name} imports {name}"
                    )
        # The recipe's numbers live in siamese_cd.models.recipe only.
        for copy in ("0.95", "weight_decay=", "Adam(", "LearningRateScheduler", "HParamsLogger"):
            assert copy not in source, f"{path.name}: {copy}"


def test_missing_split_is_named(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    assert main(["--data", str(tmp_path), "--directory", str(tmp_path / "logs")]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path) in error and "no val/ folder" in error
    assert main(["--data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err


def test_crop_size_crops_training_batches_only(synthetic):
    try:
        train, val = load_datasets(synthetic, batch_size=4, crop_size=16)
    except ConfigError:
        pytest.skip("this PairedImageDataset has no crop_size")
    (t1, _), mask = train[0]
    assert t1.shape == (4, 16, 16, 3) and mask.shape == (4, 16, 16, 1)
    (t1, _), _ = val[0]
    assert t1.shape == (4, 32, 32, 3)


def test_bayesian_tuner_proposes_trials_in_the_space(tmp_path):
    tuner = make_tuner(
        "bayesian",
        ChangeHyperModel(depth=2, filters=(2, 4), variant="diff"),
        max_trials=3,
        directory=tmp_path,
        project_name="bayes",
    )
    assert type(tuner.oracle).__name__ == "BayesianOptimizationOracle"
    assert tuner.oracle.objective.name == "val_f1" and tuner.oracle.objective.direction == "max"
    trial = tuner.oracle.create_trial("tuner0")
    assert trial.hyperparameters.get("variant") == "diff"
    assert trial.hyperparameters.get("depth") == 2


def test_distributed_role_comes_from_the_environment(monkeypatch):
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert distributed_role() is None
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_PORT"):
        distributed_role()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert distributed_role() == "chief"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner1")
    assert distributed_role() == "worker"


def test_resuming_with_other_settings_is_refused(synthetic, tmp_path, capsys):
    project = tmp_path / "logs" / "p"
    project.mkdir(parents=True)
    common = ["--data", str(synthetic), "--directory", str(tmp_path / "logs"),
              "--project-name", "p"]  # fmt: skip
    (project / "search_settings.json").write_text(json.dumps({"tuner": "random"}))
    assert main([*common, "--tuner", "hyperband", "--depth", "2"]) == 2
    error = capsys.readouterr().err
    assert "'random' then, 'hyperband' now" in error and "--overwrite" in error


# -- tuning in this process --------------------------------------------------------------------


def tensors(run_dir, tag):
    events = EventAccumulator(str(run_dir), size_guidance={TENSORS: 0})
    events.Reload()
    return events.Tensors(tag)


def session_starts(run_dir):
    """HParams session records written into `run_dir` itself, over all its event files."""
    import tensorflow as tf

    return sum(
        value.tag == hparams_metadata.SESSION_START_INFO_TAG
        for path in Path(run_dir).glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    )


def scalars(run_dir, tag):
    return [
        (e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in tensors(run_dir, tag)
    ]


@pytest.mark.slow
def test_hyperband_continues_trials_from_reloaded_weights(splits, tmp_path, monkeypatch):
    train, val = splits
    loads = []
    original = SiameseChangeModel.load_weights

    def recording_load_weights(self, filepath, *args, **kwargs):
        loads.append((self.built, Path(filepath).parent.name))
        return original(self, filepath, *args, **kwargs)

    monkeypatch.setattr(SiameseChangeModel, "load_weights", recording_load_weights)
    # Measured once for the whole search, as tuning/search.py does.
    hypermodel = ChangeHyperModel(
        variant="diff",
        depth=2,
        filters=(2, 4),
        convs_per_level=2,
        loss="bce",
        image_samples=2,
        preprocessing=preprocessing_config(train, progress=False),
        pos_weight=pos_weight_from_fraction(change_fraction(train, progress=False)),
    )
    tuner = make_tuner(
        "hyperband",
        hypermodel,
        max_epochs=3,
        hyperband_factor=3,
        max_trials=4,  # 3 one-epoch trials, then the best one continued to epoch 3
        max_model_size=10**6,
        directory=tmp_path,
        project_name="hb",
    )
    root = tmp_path / "tb"
    elsewhere = tmp_path / "elsewhere"
    callbacks = [keras.callbacks.TensorBoard(str(root)), MaskImageLogger(val, elsewhere)]
    tuner.search(train, validation_data=val, epochs=3, callbacks=callbacks, verbose=0)

    trials = tuner.oracle.trials
    assert [t.status for t in trials.values()] == [COMPLETED] * 4
    (continued,) = [t for t in trials.values() if "tuner/trial_id" in t.hyperparameters.values]
    assert continued.hyperparameters["tuner/initial_epoch"] == 1
    parent = continued.hyperparameters["tuner/trial_id"]
    # It trained epochs 2 and 3 only, from the parent's checkpoint.
    run = root / continued.trial_id / "execution0"
    assert [step for step, _ in scalars(run / "validation", "epoch_f1")] == [1, 2]
    assert loads == [(True, f"trial_{parent}")]  # into a model built at construction
    # Reloaded checkpoints reproduce the recorded scores: weights go back into built models.
    for trial in trials.values():
        model = tuner.load_model(trial)
        assert model.evaluate(val, verbose=0, return_dict=True)["f1"] == pytest.approx(
            trial.score, abs=1e-5
        )
        assert tensors(root / trial.trial_id / "execution0" / "images", "masks/sample_1")
    # A MaskImageLogger passed to search() follows each trial into its run.
    assert not elsewhere.exists()


# -- tuning/search.py end to end ---------------------------------------------------------------


def run_script(args, timeout=600, env=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout,
    )  # fmt: skip


def table_rows(stdout):
    """Rows of the printed summary table as dicts keyed by its header."""
    lines = stdout[stdout.index("completed trials by val_f1") :].splitlines()[1:]
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        if not re.match(r"\s*\d+\s", line):
            break
        rows.append(dict(zip(header, line.split())))
    return rows


def trial_states(project):
    """Trial id -> status, from Keras Tuner's trial files."""
    trials = [json.loads(path.read_text()) for path in project.glob("trial_*/trial.json")]
    return {trial["trial_id"]: trial["status"] for trial in trials}


@pytest.mark.slow
def test_search_script_end_to_end(synthetic, tmp_path):
    logs = tmp_path / "logs"
    result = run_script(
        ["--data", str(synthetic), "--tuner", "random", "--max-trials", "3", *TINY_FLAGS,
         "--directory", str(logs), "--project-name", "tiny"]
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    project = logs / "tiny"
    assert "Top 3 of 3 completed trials by val_f1" in result.stdout
    rows = table_rows(result.stdout)
    assert len(rows) == 3
    scores = [float(r["val_f1"]) for r in rows]
    assert scores == sorted(scores, reverse=True)

    best = json.loads((project / "best_hyperparameters.json").read_text())
    assert best["trial_id"] == rows[0]["trial"]
    assert best["val_f1"] == pytest.approx(scores[0], abs=1e-4)
    assert f"{best['trainable_params']:,}" == rows[0]["params"]
    assert (
        best["model_config"]["depth"] == best["hyperparameters"]["depth"] == int(rows[0]["depth"])
    )

    # Loaded in the precision the trials scored in (the precision is the loader's choice).
    assert best["precision"] == re.search(r"Precision: (\w+)", result.stdout)[1]
    keras.mixed_precision.set_global_policy(dtype_policy(best["precision"]))
    model = keras.saving.load_model(project / "best_model.keras", safe_mode=True)
    assert isinstance(model, SiameseChangeModel)
    # Measured once for the search (8-bit data: "auto" is unit scaling), saved with the model.
    assert result.stdout.count("Preprocessing: unit") == 1
    assert model.preprocessor.scaling == "unit" and model.preprocessor.pixel_dtype == "uint8"
    again = SiameseChangeModel(**best["model_config"])  # the record rebuilds the network
    again.compile(**best["compile"])
    assert again.preprocessor.scaling == "unit" and count_params(again) == best["trainable_params"]
    assert model.backbone.get_config()["filters"] == best["model_config"]["filters"]
    val = PairedImageDataset(synthetic / "val", batch_size=8)
    (t1, t2), _ = val[0]
    probabilities = model.predict((t1, t2), verbose=0)
    assert probabilities.shape == (8, 32, 32, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    # Finished as a training run is: the decision threshold chosen on DATA/val, recorded.
    assert "Decision threshold" in result.stdout and "saved with the model" in result.stdout
    assert model.threshold == pytest.approx(best["threshold"])
    chosen = model.evaluate(val, verbose=0, return_dict=True)["f1"]
    # The exported weights are the best trial's best epoch (at 0.5 they score its val_f1), and
    # the loss is ready to evaluate.
    model.set_threshold(0.5)
    f1 = model.evaluate(val, verbose=0, return_dict=True)["f1"]
    assert f1 == pytest.approx(best["val_f1"], abs=1e-5)
    assert chosen >= f1 - 1e-4

    states = trial_states(project)
    assert sorted(states) == ["0", "1", "2"] and set(states.values()) == {COMPLETED}
    for trial_id in states:
        run = project / "tensorboard" / trial_id / "execution0"
        val_f1 = scalars(run / "validation", "epoch_f1")
        assert [step for step, _ in val_f1] == [0, 1]
        assert [step for step, _ in scalars(run / "train", "epoch_f1")] == [0, 1]
        assert [e.step for e in tensors(run / "images", "masks/sample_0")] == [0, 1]
        assert tensors(run / "images", "masks/sample_1")
        trial = json.loads((project / f"trial_{trial_id}" / "trial.json").read_text())
        assert max(v for _, v in val_f1) == pytest.approx(trial["score"], abs=1e-6)
        # HParams of the trial, as TensorBoard's HParams dashboard reads them.
        events = EventAccumulator(str(run))
        events.Reload()
        info = hparams_metadata.parse_session_start_info_plugin_data(
            events.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data.content
        )
        values = trial["hyperparameters"]["values"]
        assert info.hparams["depth"].number_value == values["depth"]
        assert info.hparams["variant"].string_value == values["variant"]
        assert session_starts(run) == 1  # one HParams callback per trial, not two


@pytest.mark.slow
def test_killed_search_resumes_without_rerunning_finished_trials(synthetic, tmp_path):
    logs = tmp_path / "logs"
    project = logs / "resume"
    # Default tuner (Hyperband): max_epochs 2 and factor 3 plan two trials of two epochs.
    args = ["--data", str(synthetic), *TINY_FLAGS, "--directory", str(logs),
            "--project-name", "resume"]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO,
    )  # fmt: skip

    def first_trial_saved():
        # The tuner file is written after the oracle recorded the finished trial.
        try:
            oracle = json.loads((project / "oracle.json").read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return (project / "tuner0.json").is_file() and len(oracle["end_order"]) >= 1

    deadline = time.monotonic() + 300
    while not first_trial_saved() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the search ended before it could be killed"
    states = trial_states(project)
    finished = [t for t, s in states.items() if s == COMPLETED]
    assert len(finished) == 1, states
    (first,) = finished
    first_run = project / "tensorboard" / first
    before = sorted((p, p.stat().st_size) for p in first_run.rglob("*") if p.is_file())

    rerun = run_script(args)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "Resuming the search in" in rerun.stdout
    started = re.findall(r"^Trial id (\S+) started", rerun.stdout, re.MULTILINE)
    assert started and first not in started
    states = trial_states(project)
    assert len(states) == 2 and set(states.values()) == {COMPLETED}
    assert sorted((p, p.stat().st_size) for p in first_run.rglob("*") if p.is_file()) == before
    assert "Top 2 of 2 completed trials by val_f1" in rerun.stdout
    assert (project / "best_model.keras").is_file()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers(synthetic, tmp_path):
    logs = tmp_path / "logs"
    args = ["--data", str(synthetic), "--tuner", "random", "--max-trials", "4", *TINY_FLAGS,
            "--directory", str(logs), "--project-name", "dist"]  # fmt: skip
    base = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(free_port()),
    }
    outputs = {tuner_id: tmp_path / f"{tuner_id}.log" for tuner_id in ("chief", "tuner0", "tuner1")}
    processes = {}
    for tuner_id, log in outputs.items():
        env = {**base, "KERASTUNER_TUNER_ID": tuner_id}
        if tuner_id == "chief":
            env["CUDA_VISIBLE_DEVICES"] = ""  # the chief only serves the oracle
        with open(log, "w") as out:
            processes[tuner_id] = subprocess.Popen(
                [sys.executable, str(SCRIPT), *args],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            )  # fmt: skip
    try:
        for process in processes.values():
            process.wait(timeout=600)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    logs_text = {tuner_id: log.read_text() for tuner_id, log in outputs.items()}
    for tuner_id, process in processes.items():
        assert process.returncode == 0, f"{tuner_id}:\n{logs_text[tuner_id][-3000:]}"

    ran = {
        worker: re.findall(rf"^Trial id (\S+) completed on {worker}", logs_text[worker], re.M)
        for worker in ("tuner0", "tuner1")
    }
    assert ran["tuner0"] and ran["tuner1"], ran
    assert sorted(ran["tuner0"] + ran["tuner1"]) == ["0", "1", "2", "3"]
    assert "Top 4 of 4 completed trials by val_f1" in logs_text["chief"]
    assert "Devices: chief" in logs_text["chief"]
    assert (logs / "dist" / "best_model.keras").is_file()


def test_tune_distribute_option_sets_each_trials_strategy():
    from siamese_cd.tuning.search import build_parser, trial_strategy

    args = build_parser().parse_args(["--data", "d", "--distribute", "mirrored"])
    assert args.distribute == "mirrored"
    assert build_parser().parse_args(["--data", "d"]).distribute == "auto"
    gpus = object()  # what configure_devices returns for several GPUs
    assert trial_strategy("auto", gpus) is gpus and trial_strategy("auto", None) is None
    assert trial_strategy("none", gpus) is None
    mirrored = trial_strategy("mirrored", None)
    assert type(mirrored).__name__ == "MirroredStrategy" and mirrored.num_replicas_in_sync >= 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--data", "d", "--distribute", "multi-worker"])
