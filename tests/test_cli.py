import argparse
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from siamese_cd.cli import COMMANDS, build_parser, chosen_command, main
from tests.fakes import make_split

TENSORFLOW_START_UP = ("cpu_feature_guard", "cudart_stub", "absl::InitializeLog", "oneDNN")


def parse(argv):
    return build_parser([chosen_command(argv)]).parse_args(argv)


def test_train_flags_parse():
    args = parse(
        ["train", "d", "--variant", "conc", "--depth", "3", "--filters", "8,16,24",
         "--loss", "bce+dice", "--lr", "2e-4", "--mixed-precision", "--early-stopping", "5",
         "--crop-size", "128", "--preprocessing", "standardize"]
    )  # fmt: skip
    assert args.variant == "conc" and args.depth == 3
    assert args.filters == [8, 16, 24]
    assert args.loss == "bce+dice" and args.lr == pytest.approx(2e-4)
    assert args.precision == "float16"  # --mixed-precision, the old spelling
    assert args.early_stopping == 5 and args.crop_size == 128
    assert args.preprocessing == "standardize"
    defaults = parse(["train", "d"])
    assert defaults.filters == 16 and defaults.loss == "auto" and defaults.early_stopping is None
    assert defaults.precision == "auto" and defaults.epochs == 50
    assert defaults.choose_threshold  # the threshold is chosen on DATA/val unless told not to
    assert not parse(["train", "d", "--no-choose-threshold"]).choose_threshold
    assert parse(["train", "d", "--precision", "bfloat16"]).precision == "bfloat16"
    for command in (
        ["evaluate", "m", "d"],
        ["predict", "m", "a", "b", "-o", "x.png"],
        ["reproduce", "oscd", "d"],
    ):
        assert parse([*command, "--precision", "float32"]).precision == "float32"
    # OSCD bands by name; None lets train read all 13 and evaluate match the model.
    assert defaults.bands is None and parse(["evaluate", "m", "d"]).bands is None
    assert parse(["train", "d", "--bands", "rgb"]).bands == "rgb"
    assert parse(["evaluate", "m", "d", "--bands", "b04,B08"]).bands == ["B04", "B08"]
    assert defaults.lr is None  # the recipe's own learning rate
    assert defaults.preprocessing is None and not defaults.verbose  # None: the recipe's


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "bce+lovasz"], "unknown loss 'bce+lovasz'"),
        (["--filters", "8,x"], "expected an int or ints"),
        (["--filters", "0"], "widths must be positive"),
        (["--variant", "siam"], "invalid choice"),
        (["--epochs", "0"], "must be at least 1"),
        (["--preprocessing", "minmax"], "invalid choice"),
    ],
)
def test_bad_train_flags_exit_2_with_a_message(flags, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse(["train", "d", *flags])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "m", "a", "b", "-o", "o", "--threshold", "1.5"], "between 0 and 1"),
        (["predict", "m", "a", "b", "-o", "o", "--bands", "0,1"], "counted from 1"),
        (["predict", "m", "a", "b", "-o", "o", "--overlap", "-1"], "at least 0"),
        (["evaluate", "m", "d", "--tile-size", "x"], "expected an integer"),
        (["evaluate", "m", "d", "--bands", "4,3,2"], "names like B04,B08"),
        (["synth", "out", "--train", "-2"], "at least 0"),
    ],
)
def test_bad_flags_of_other_commands(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_verbose_before_or_after_the_command():
    assert parse(["--verbose", "check", "d"]).verbose
    assert parse(["check", "d", "-v"]).verbose
    assert not parse(["check", "d"]).verbose


def test_help_lists_every_command_from_the_table(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert list(COMMANDS) == [
        "synth", "train", "check", "evaluate", "predict", "export", "tune", "reproduce",
        "convert-torch",
    ]  # fmt: skip
    for name in COMMANDS:  # a long name has its help on the next line
        assert re.search(rf"^    {re.escape(name)}\s", printed, flags=re.MULTILINE), name


def test_tune_delegates_to_the_tuning_search(monkeypatch, capsys):
    calls = []

    def add_arguments(parser):
        parser.add_argument("data")
        parser.add_argument("--trials", type=int, default=3)

    def run(args):
        calls.append(args)
        return 0

    fake = types.SimpleNamespace(add_arguments=add_arguments, run=run)
    monkeypatch.setitem(sys.modules, "siamese_cd.tuning.search", fake)
    assert main(["tune", "folder", "--trials", "7"]) == 0
    assert isinstance(calls[0], argparse.Namespace)
    assert calls[0].data == "folder" and calls[0].trials == 7 and calls[0].command == "tune"
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    assert "--trials" in capsys.readouterr().out


def run_cli(*argv, env=None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ABSL_"))}
    return subprocess.run(
        [sys.executable, "-m", "siamese_cd.cli", *argv],
        capture_output=True,
        text=True,
        env={**environment, **(env or {})},
        timeout=300,
    )


def package_imports_tensorflow() -> bool:
    probe = "import sys, siamese_cd; print('tensorflow' in sys.modules)"
    package = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return package.stdout.strip() == "True"


def test_quiet_import_of_tensorflow_prints_nothing(tmp_path):
    # quiet.py loaded by path, so that no siamese_cd package init runs before it.
    quiet = Path(__file__).parents[1] / "siamese_cd" / "cli" / "quiet.py"
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('quiet', {str(quiet)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "module.quiet_tensorflow()\n"
        "import tensorflow as tf\n"
        "print(int(tf.constant(2) * 3))\n"
        "print('still writes', file=sys.stderr)\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ABSL_"))}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0 and result.stdout.strip() == "6"
    assert result.stderr.strip() == "still writes"  # standard error is back after the import


def test_check_on_a_clean_split_prints_no_tensorflow_log_line(tmp_path):
    split = make_split(tmp_path / "train", count=3)
    result = run_cli("check", str(split))
    assert result.returncode == 0, result.stderr
    assert "OK: no problems found" in result.stdout
    for marker in TENSORFLOW_START_UP:
        assert marker not in result.stderr and marker not in result.stdout


def test_help_imports_no_tensorflow():
    result = run_cli("--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0
    imported = result.stderr
    assert "tensorflow" not in imported and "keras" not in imported
    assert "siamese_cd.tuning" not in imported


@pytest.mark.parametrize(
    "argv", [["train"], ["train", "d", "--loss", "lovasz"], ["evaluate", "m"], ["bogus"]]
)
def test_usage_errors_import_no_tensorflow(argv):
    result = run_cli(*argv, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2
    assert "error:" in result.stderr
    assert "tensorflow" not in result.stderr and "keras" not in result.stderr


def test_package_import_is_lazy():
    assert not package_imports_tensorflow()
