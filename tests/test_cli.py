import pytest

from siamese_cd.cli import build_parser


def test_train_flags_parse():
    args = build_parser().parse_args(
        ["train", "d", "--variant", "conc", "--depth", "3", "--filters", "8,16,24",
         "--loss", "bce+dice", "--lr", "2e-4", "--mixed-precision", "--early-stopping", "5",
         "--crop-size", "128"]
    )  # fmt: skip
    assert args.variant == "conc" and args.depth == 3
    assert args.filters == [8, 16, 24]
    assert args.loss == "bce+dice" and args.lr == pytest.approx(2e-4)
    assert args.mixed_precision and args.early_stopping == 5 and args.crop_size == 128
    defaults = build_parser().parse_args(["train", "d"])
    assert defaults.filters == 16 and defaults.loss == "bce" and defaults.early_stopping is None
    assert not defaults.mixed_precision and defaults.epochs == 50 and defaults.lr == 1e-3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "bce+lovasz"], "unknown loss 'bce+lovasz'"),
        (["--filters", "8,x"], "expected an int or ints"),
        (["--filters", "0"], "widths must be positive"),
        (["--variant", "siam"], "invalid choice"),
        (["--epochs", "0"], "must be at least 1"),
    ],
)
def test_bad_train_flags_exit_2_with_a_message(flags, message, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["train", "d", *flags])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
