"""Hints in messages name only options the running command accepts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import siamese_cd
from siamese_cd.cli import COMMANDS, command_options, main
from siamese_cd.hints import option_hint, running_command

PACKAGE = Path(siamese_cd.__file__).parent
HINT_CALL = re.compile(r"option_hint\(\s*(['\"])(.*?)\1\s*,\s*(['\"])(.*?)\3")


def hint_calls() -> list[tuple[str, str, str]]:
    """Every ``option_hint(python, option)`` in the library: (module, python, option)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for match in HINT_CALL.finditer(path.read_text()):
            found.append((str(path.relative_to(PACKAGE)), match.group(2), match.group(4)))
    return found


def test_every_hinted_option_exists_and_each_command_is_told_only_what_it_accepts():
    calls = [call for call in hint_calls() if call[0] != "hints.py"]
    assert {"--on-missing skip", "--label-threshold", "--bands"} <= {c[2] for c in calls}
    options = {name: command_options(name) for name in COMMANDS}
    for module, python, option in calls:
        flag = option.split()[0]
        accepting = [name for name, accepted in options.items() if flag in accepted]
        assert accepting, f"{module} hints {flag}, which no command accepts"
        for name, accepted in options.items():
            with running_command(name, accepted):
                hint = option_hint(python, option)
            if flag in accepted:
                assert hint == option
            else:
                assert hint == f"{python} in Python (siamese-cd {name} has no {flag} option)"


def write_folders(root: Path, stems=("a", "b")) -> tuple[Path, Path]:
    rng = np.random.default_rng(2)
    folders = root / "t1", root / "t2"
    for folder in folders:
        folder.mkdir(parents=True)
        for stem in stems:
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{stem}.png")
    return folders


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from siamese_cd import SiameseChangeModel

    path = tmp_path_factory.mktemp("model") / "m.keras"
    SiameseChangeModel(depth=2, filters=2, preprocessing="unit").save(path)
    return path


def test_predict_names_its_own_on_missing_option_and_accepts_it(tmp_path, model_path, capsys):
    t1, t2 = write_folders(tmp_path)
    (t2 / "b.png").unlink()
    out = tmp_path / "maps"
    args = ["predict", str(model_path), str(t1), str(t2), "-o", str(out), "--tile-size", "32"]
    assert main([*args, "--overlap", "8"]) == 2
    error = capsys.readouterr().err
    assert "b.png" in error and "leave them out: --on-missing skip." in error
    assert "in Python" not in error

    with pytest.warns(UserWarning, match=r"(?s)Skipping 1 .*b\.png"):
        assert main([*args, "--overlap", "8", "--on-missing", "skip"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


def test_outside_the_command_line_both_spellings_are_given(tmp_path):
    from siamese_cd.errors import PairingError
    from siamese_cd.evaluation.inference import predict_folders

    t1, t2 = write_folders(tmp_path)
    (t2 / "b.png").unlink()
    message = "on_missing='skip' in Python, --on-missing skip on the command line"
    with pytest.raises(PairingError, match=re.escape(message)):
        predict_folders(None, t1, t2, tmp_path / "maps", progress=False)
