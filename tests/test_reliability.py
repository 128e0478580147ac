"""Bad inputs are named on every path: check, the fit path, the tf.data path, the CLI."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest
from PIL import Image

from siamese_cd.cli import main
from siamese_cd.data.check import check_dataset
from siamese_cd.data.pipeline.dataset import PairedImageDataset
from siamese_cd.data.readers.decoding import read_image, read_label
from siamese_cd.errors import ConfigError, NonFiniteError, TrainingError
from tests.fakes import make_split, write_geotiff


def kinds(report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for problem in report.problems:
        out.setdefault(problem.kind, []).append(problem.path)
    return out


def test_check_reports_an_empty_split(tmp_path):
    for folder in ("time1", "time2", "label"):
        (tmp_path / "train" / folder).mkdir(parents=True)
    report = check_dataset(tmp_path / "train", progress=False)
    assert not report.ok and kinds(report) == {"empty": [str(tmp_path / "train")]}
    assert main(["check", str(tmp_path / "train")]) == 1


def test_check_reports_mixed_bit_depths(tmp_path):
    split = make_split(tmp_path / "train", count=3)
    odd = split / "time2" / "00001.png"
    Image.fromarray(np.full((32, 32), 4000, np.uint16)).save(odd)
    report = check_dataset(split, progress=False)
    assert kinds(report) == {"mixed_bit_depth": [str(odd)]}
    assert "uint16 pixels" in report.problems[0].message
    with pytest.raises(Exception, match=str(odd)):  # and training refuses the same file
        data = PairedImageDataset(split, batch_size=3)
        data[0]


def test_check_and_reading_report_masks_below_the_threshold(tmp_path):
    split = make_split(tmp_path / "train", count=2)
    faint = split / "label" / "00001.png"
    label = np.zeros((32, 32), np.uint8)
    label[:8] = 7
    Image.fromarray(label).save(faint)
    report = check_dataset(split, progress=False)
    assert str(faint) in kinds(report)["label_below_threshold"]
    problem = next(p for p in report.problems if p.kind == "label_below_threshold")
    assert "{7}" in problem.message and "--label-threshold" in problem.message
    assert json.loads(json.dumps(report.to_dict()))["problems"]  # listed in --json too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_label(faint)
        read_label(faint)
    assert len([w for w in caught if str(faint) in str(w.message)]) == 1  # one warning
    lowered = check_dataset(split, label_threshold=5, progress=False)  # threshold 5 reads it
    assert "label_below_threshold" not in kinds(lowered)


def test_change_fraction_zero_names_the_threshold_and_how_to_change_it():
    from siamese_cd.models.losses import pos_weight_from_fraction

    with pytest.raises(ConfigError, match="label_threshold=.*--label-threshold"):
        pos_weight_from_fraction(0.0)


def test_nan_and_inf_pixels_are_named_on_every_path(tmp_path):
    split = make_split(tmp_path / "train", count=2)
    for folder in ("time1", "time2"):
        for stem in ("00000", "00001"):
            image = np.ones((32, 32, 3), np.float32)
            if (folder, stem) == ("time2", "00001"):
                image[3, 4, 1] = np.nan
                image[5, 5, 0] = np.inf
            (split / folder / f"{stem}.png").unlink()
            write_geotiff(split / folder / f"{stem}.tif", image)
    bad = split / "time2" / "00001.tif"
    with pytest.raises(NonFiniteError, match=f"{bad}: 1 NaN and 1 infinite"):
        read_image(bad)
    with pytest.raises(NonFiniteError, match=str(bad)):  # fit path
        PairedImageDataset(split, batch_size=2)[0]
    with pytest.raises(Exception, match=str(bad)):  # tf.data path
        list(PairedImageDataset(split, batch_size=2).as_tf_dataset())
    assert kinds(check_dataset(split, progress=False)) == {"non_finite": [str(bad)]}


def test_a_nan_loss_stops_fit_in_python_naming_epoch_and_batch():
    from siamese_cd.models.siamese import SiameseChangeModel

    keras.utils.set_random_seed(0)
    model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    model.compile()
    x = np.ones((4, 16, 16, 3), np.float32)
    # A whole image of NaN in the second batch: one NaN pixel can vanish on the way (a
    # dropped channel, a max-pool that ignores it), and then the first NaN loss came a step
    # later, depending on the random state other tests left.
    x[2] = np.nan
    y = np.zeros((4, 16, 16, 1), np.float32)
    y[:, :4] = 1
    with pytest.raises(TrainingError, match="became NaN at epoch 1, batch 2"):
        model.fit((x, x), y, batch_size=2, epochs=2, verbose=0, shuffle=False)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda path: path.write_bytes(b""), "the file is empty"),
        (lambda path: path.write_bytes(b"GIF89a not really"), "not a PNG, JPEG or BMP"),
        (lambda path: path.write_bytes(path.read_bytes()[:60]), "truncated PNG"),
        (lambda path: path.write_bytes(path.read_bytes()[:12]), "truncated PNG"),
        (
            lambda path: Image.fromarray(np.full((32, 32), 300, np.uint16)).save(path),
            "store every image of a split with one bit depth",
        ),
    ],
)
def test_tf_data_path_names_the_file(tmp_path, damage, words):
    split = make_split(tmp_path / "train", count=2)
    bad = split / "time1" / "00001.png"
    damage(bad)
    with pytest.raises(Exception, match=str(bad)) as error:
        list(PairedImageDataset(split, batch_size=2).as_tf_dataset())
    assert words in str(error.value)


def _scramble_pixels(path):
    data = bytearray(path.read_bytes())  # signature and header kept, IEND kept
    data[41:-12] = bytes(b ^ 0x5A for b in data[41:-12])
    path.write_bytes(bytes(data))


def _truncated_jpegs(split):
    for path in sorted(split.glob("time*/*.png")):
        Image.open(path).convert("RGB").save(path.with_suffix(".jpg"), quality=95)
        path.unlink()
    bad = split / "time2" / "00001.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    return bad


@pytest.mark.parametrize("damage", ["png_pixels", "jpeg_truncated"])
def test_damage_inside_a_file_is_named_when_tensorflow_decodes_it(tmp_path, damage):
    from siamese_cd.data.readers.undecodable import HINT
    from siamese_cd.errors import ImageReadError
    from siamese_cd.models.siamese import SiameseChangeModel

    split = make_split(tmp_path / "train", count=2)
    if damage == "png_pixels":
        bad = split / "time1" / "00001.png"
        _scramble_pixels(bad)
    else:
        bad = _truncated_jpegs(split)
    data = PairedImageDataset(split, batch_size=2)
    pipeline = data.as_tf_dataset()
    model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    model.compile(loss="dice")  # no weight from the data: evaluate runs after the failed fit
    for run in (
        lambda: model.fit(pipeline, epochs=1, verbose=0),
        lambda: model.evaluate(pipeline, verbose=0),
        lambda: model.predict(pipeline, verbose=0),
    ):
        with pytest.raises(ImageReadError, match=f"^{bad}: cannot decode image") as error:
            run()
        assert "Decode" in str(error.value.__cause__)  # TensorFlow's own error is kept
    with pytest.raises(Exception, match="Decode") as error:
        model.evaluate(pipeline.map(lambda x, y: (x, y)), verbose=0)  # built by hand: unknown
    assert HINT in error.value.__notes__


def test_cli_refuses_thresholds_outside_0_1(capsys):
    for value in ("1.5", "0", "1", "-0.1"):
        with pytest.raises(SystemExit) as stop:
            main(["predict", "m.keras", "a.png", "b.png", "-o", "x.png", "--threshold", value])
        assert stop.value.code == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err


def test_cli_checks_outputs_before_loading_the_model(tmp_path, capsys):
    missing_model = str(tmp_path / "none.keras")  # never loaded: the output is checked first
    assert main(["predict", missing_model, "a.png", "b.png", "-o", str(tmp_path / "x.jpg")]) == 2
    assert f"{tmp_path / 'x.jpg'}: write change maps as .png" in capsys.readouterr().err
    args = ["predict", missing_model, "a.png", "b.png", "-o", str(tmp_path / "p.png")]
    assert main([*args, "--probabilities"]) == 2
    assert "probabilities are floats" in capsys.readouterr().err
    target = tmp_path / "missing" / "dir" / "x.json"
    assert main(["evaluate", missing_model, str(tmp_path), "--json", str(target)]) == 2
    assert target.parent.is_dir()  # created before anything ran
    assert main(["evaluate", missing_model, str(tmp_path), "--json", str(tmp_path / "x.txt")]) == 2
    assert "write the scores as .json" in capsys.readouterr().err


def test_cli_data_options_on_every_data_command():
    from siamese_cd.cli import build_parser

    parser = build_parser()
    commands = {
        "train": ["train", "d"],
        "evaluate": ["evaluate", "m.keras", "d"],
        "check": ["check", "d"],
        "tune": ["tune", "--data", "d"],
    }
    for words in commands.values():
        args = parser.parse_args([*words, "--on-missing", "skip", "--label-threshold", "5"])
        assert (args.on_missing, args.label_threshold) == ("skip", 5)
        # train's None is its recipe's scaling; the tuner's is its own default.
        assert args.preprocessing in (None, "auto") if "preprocessing" in args else True


def test_hints_name_the_command_line_option_too(tmp_path):
    from siamese_cd.errors import PairingError

    split = make_split(tmp_path / "train", count=2)
    (split / "time2" / "00001.png").unlink()
    with pytest.raises(PairingError, match="--on-missing skip"):
        PairedImageDataset(split)
