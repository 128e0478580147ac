"""A real TensorBoard server over a real training run, checked over HTTP."""

import io
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from siamese_cd.cli import main
from siamese_cd.data.synthetic.generate import make_synthetic_dataset
from siamese_cd.training.panels import PANELS
from siamese_cd.training.settings import TrainSettings

SIZE = 32


@pytest.fixture(scope="module")
def trained_logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    data = make_synthetic_dataset(root / "data", train=32, val=8, test=8, size=SIZE, progress=False)
    logs = root / "logs"
    code = main(
        ["train", str(data), "--epochs", "2", "--batch-size", "8", "--depth", "2",
         "--filters", "4", "--recipe", "sigmoid", "--loss", "bce+dice",
         "--logdir", str(logs / "run1")]
    )  # fmt: skip
    assert code == 0
    return logs


@pytest.fixture(scope="module")
def server(trained_logs):
    executable = Path(sys.executable).with_name("tensorboard")
    process = subprocess.Popen(
        [str(executable), "--logdir", str(trained_logs), "--host", "127.0.0.1", "--port", "0",
         "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url, deadline = None, time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                raise RuntimeError("tensorboard exited before serving")
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            url = match.group(1) if match else None
        assert url, "tensorboard did not print its address"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def get(url, path, data=None):
    request = urllib.request.Request(url + path, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def get_json(url, path, data=None, until=lambda body: True):
    """Poll until the server has loaded enough for `until` to hold."""
    deadline = time.monotonic() + 60
    while True:
        body = json.loads(get(url, path, data))
        if until(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


@pytest.mark.slow
def test_images_scalars_hparams_and_pr_curve_are_served(server):
    tags = get_json(server, "/data/plugin/images/tags", until=lambda b: "run1/images" in b)
    image_tags = tags["run1/images"]
    assert {f"masks/sample_{k}" for k in range(6)} <= set(image_tags)
    assert "green = true positive" in image_tags["masks/sample_0"]["description"]

    query = urllib.parse.urlencode({"run": "run1/images", "tag": "masks/sample_0", "sample": 0})
    entries = get_json(server, f"/data/plugin/images/images?{query}")
    assert [e["step"] for e in entries] == [0, 1]  # one per epoch
    png = get(server, "/data/plugin/images/individualImage?" + entries[-1]["query"])
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (len(PANELS) * SIZE, SIZE)  # width = panels x tile width

    query = urllib.parse.urlencode({"run": "run1/validation", "tag": "epoch_f1"})
    f1 = get_json(server, f"/data/plugin/scalars/scalars?{query}")
    assert [step for _, step, _ in f1] == [0, 1]
    assert all(0.0 <= value <= 1.0 for _, _, value in f1)

    query = urllib.parse.urlencode({"run": "run1/train", "tag": "epoch_learning_rate"})
    rates = [value for _, _, value in get_json(server, f"/data/plugin/scalars/scalars?{query}")]
    assert rates[1] == pytest.approx(rates[0] * 0.95, rel=1e-4)  # the paper's per-epoch decay

    experiment = get_json(
        server,
        "/data/plugin/hparams/experiment",
        data=json.dumps({"experimentName": ""}).encode(),
        until=lambda b: b.get("hparamInfos"),
    )
    names = {info["name"] for info in experiment["hparamInfos"]}
    # Every setting of the run (TrainSettings.hparams), not a hand-picked few.
    assert names == set(TrainSettings(epochs=1).hparams())
    assert {"dropout", "init", "crop_size", "augment", "seed", "epochs", "precision"} <= names
    assert {"variant", "depth", "filters", "preprocessing", "loss", "lr", "batch_size"} <= names
    metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert ("validation", "epoch_f1") in metrics and ("test", "epoch_f1") in metrics

    curves = get_json(server, "/data/plugin/pr_curves/tags", until=lambda b: b)
    assert "pr_curve/change/pr_curves" in curves["run1/images"]
