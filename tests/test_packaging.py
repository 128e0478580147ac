import subprocess
import sys


def test_package_imports_from_any_directory(tmp_path):
    # Scripts such as benchmarks/*.py run with their own folder, not the repo, on sys.path.
    code = "import siamese_cd; print(siamese_cd.SiameseChangeModel.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "SiameseChangeModel"


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "siamese_cd.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "synth" in out.stdout and "train" in out.stdout
