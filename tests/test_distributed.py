"""Training beyond one device: the data plan, two loopback workers, a crash and resume, and
mirrored training over two logical CPUs.

The end-to-end tests start real processes on 127.0.0.1 (free ports, ``TF_CONFIG``) through
``tests/distributed_worker.py``; every process is bounded in time and killed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from siamese_cd.distributed import sharding as plan
from siamese_cd.distributed.strategy import cluster_from_env, resolve_mode
from siamese_cd.errors import ConfigError, DatasetError
from tests.fakes import make_split

RUNNER = Path(__file__).with_name("distributed_worker.py")
REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds a process may take; the whole test stays well below on an idle machine
# Two workers and one process differ only in the order of float sums (all-reduce).
LOSS_TOLERANCE = 1e-4
# Float32: the comparisons are about distribution, not about reduced precision.
TINY = ["--depth", "2", "--filters", "2", "--dropout", "0", "--no-augment", "--seed", "0"]
TINY += ["--precision", "float32"]
# The sigmoid recipe's loss averages over pixels, so N replicas of B/N pairs compute what one
# device of B pairs does; the paper recipe's NLL is divided by each replica's own sum of
# weights (as PyTorch's DistributedDataParallel does), which differs by that normalisation.
TINY += ["--recipe", "sigmoid"]


# -- the plan of who reads what ------------------------------------------------------------------


def test_epoch_order_is_the_same_global_batches_for_any_number_of_workers():
    order = plan.epoch_order(10, batch_size=4, seed=3, epoch=1)
    assert order.shape == (2, 4)
    assert len(set(order.ravel())) == 8  # no scene twice in an epoch
    two = [plan.worker_order(order, w, 2).reshape(2, 2) for w in range(2)]
    assert np.array_equal(np.concatenate(two, axis=1), order)
    assert not np.array_equal(order, plan.epoch_order(10, 4, seed=3, epoch=2))


def test_workers_own_disjoint_shares_of_every_scene():
    shares = [set(plan.scenes_of_worker(11, 4, seed=0, worker=w, workers=2)) for w in range(2)]
    assert shares[0].isdisjoint(shares[1])
    assert shares[0] | shares[1] == set(range(11))
    for epoch in range(3):
        order = plan.epoch_order(11, 4, seed=0, epoch=epoch)
        for worker in range(2):
            assert set(plan.worker_order(order, worker, 2)) <= shares[worker]


def test_batch_must_split_over_replicas_and_fit_the_data():
    with pytest.raises(ConfigError, match="multiple of the 4 replicas"):
        plan.check_batch(6, replicas=4, workers=2, scenes=100)
    with pytest.raises(DatasetError, match="fewer than one global batch"):
        plan.check_batch(8, replicas=2, workers=2, scenes=5)


def test_tf_config_and_auto():
    config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"index": 1}}
    with pytest.raises(ConfigError, match="task must be"):
        cluster_from_env({"TF_CONFIG": json.dumps(config)})
    config["task"]["type"] = "worker"
    assert cluster_from_env({"TF_CONFIG": json.dumps(config)}).index == 1
    with pytest.raises(ConfigError, match="only 'worker' tasks"):
        cluster_from_env({"TF_CONFIG": json.dumps({"cluster": {"ps": ["a:1"], "worker": []}})})
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        resolve_mode("multi-worker", {})
    assert resolve_mode("auto", {"TF_CONFIG": json.dumps(config)}, gpus=4) == "multi-worker"


def test_as_tf_dataset_shard_reads_only_its_scenes(tmp_path):
    from siamese_cd.data.pipeline.dataset import PairedImageDataset

    data = PairedImageDataset(make_split(tmp_path, count=5), batch_size=8)
    levels = [
        sorted(int(t1[i, 0, 0, 0]) for i in range(len(t1)))
        for (t1, _), _ in data.as_tf_dataset(shard=(2, 1))
    ]
    assert levels == [[15, 25]]  # scenes 1 and 3: t1 is 10 + 5 * index


def test_a_file_tensorflow_cannot_decode_is_named_by_the_distributed_loop(tmp_path):
    from siamese_cd.data.pipeline.dataset import PairedImageDataset
    from siamese_cd.distributed.loop import fit_distributed
    from siamese_cd.errors import ImageReadError
    from siamese_cd.models.siamese import SiameseChangeModel

    split = make_split(tmp_path / "train", count=4)
    bad = split / "label" / "00002.png"
    data = bytearray(bad.read_bytes())
    data[41:-12] = bytes(len(data) - 53)  # the compressed pixels zeroed; header and end kept
    bad.write_bytes(bytes(data))
    model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
    model.compile(loss="dice")
    train = PairedImageDataset(split, batch_size=2)
    with pytest.raises(ImageReadError, match=f"^{bad}: cannot decode image"):
        fit_distributed(model, train, epochs=1, verbose=0)


# -- processes on loopback -------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    make_split(root / "train", count=8, size=32, seed=0)
    make_split(root / "val", count=4, size=32, seed=1)
    make_split(root / "test", count=2, size=32, seed=2)
    return root


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_workers(count, args, run_dir: Path, name: str, extra_env=None):
    """Start `count` workers of one loopback cluster; their output goes to files."""
    ports = _free_ports(count)
    processes = []
    for index in range(count):
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
        scratch = run_dir / f"{name}-tmp{index}"
        scratch.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_CONFIG": json.dumps(tf_config),
            "READ_LOG": str(run_dir / f"{name}-reads{index}.txt"),
            "TMPDIR": str(scratch),
            **((extra_env or {}).get(index, {})),
        }
        out = open(run_dir / f"{name}-out{index}.txt", "w")  # noqa: SIM115 - closed by the OS
        processes.append(
            subprocess.Popen(
                [sys.executable, str(RUNNER), *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        )
    return processes


def _kill(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _final(run: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import (
        TENSORS,
        EventAccumulator,
    )

    events = EventAccumulator(str(run), size_guidance={TENSORS: 0})
    events.Reload()
    from tensorboard.util.tensor_util import make_ndarray

    return float(make_ndarray(events.Tensors(tag)[-1].tensor_proto))


def _reference_loss(folder: Path, epochs: int, batch_size: int) -> dict:
    """The same training in this process, one device, through the same loop."""
    import keras

    from siamese_cd.distributed.loop import fit_distributed
    from siamese_cd.training.pipeline import build_model, load_splits
    from siamese_cd.training.settings import TrainSettings

    settings = TrainSettings(
        epochs,
        batch_size,
        depth=2,
        filters=2,
        dropout=0,
        augment=False,
        distribute="none",
        precision="float32",
        recipe="sigmoid",  # as TINY
    )
    keras.utils.set_random_seed(0)
    splits = load_splits(folder, settings)
    model = build_model(settings, splits.train.channels)
    history = fit_distributed(model, splits.train, splits.val, epochs=epochs, verbose=0)
    return {name: values[-1] for name, values in history.history.items()}


@pytest.mark.slow
def test_two_loopback_workers_train_like_one_process(folder, tmp_path):
    logdir = tmp_path / "run"
    args = ["train", str(folder), "--epochs", "2", "--batch-size", "4", "--logdir", str(logdir)]
    args += [*TINY, "--distribute", "multi-worker"]
    started = time.monotonic()
    processes = _start_workers(2, args, tmp_path, "two")
    try:
        codes = [process.wait(timeout=TIMEOUT) for process in processes]
    finally:
        _kill(processes)
    seconds = time.monotonic() - started
    outputs = [(tmp_path / f"two-out{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], outputs
    # One model and one set of logs, the chief's; the other worker's scratch folder is gone.
    assert (logdir / "model.keras").is_file()
    assert len(list((logdir / "train").glob("events.out.tfevents.*"))) == 1
    assert list((logdir / "images").glob("events.out.tfevents.*"))
    assert (logdir / "test").is_dir() and "Test split" in outputs[0]
    assert "Test split" not in outputs[1]
    assert not (logdir / "backup").exists()
    assert list((tmp_path / "two-tmp1").iterdir()) == []
    # Each worker's pipeline read only its share of the training scenes, each once an epoch.
    reads = [(tmp_path / f"two-reads{i}.txt").read_text().split() for i in range(2)]
    train_files = [sorted(p for p in r if "/train/" in p) for r in reads]
    scenes = [{Path(p).stem for p in files} for files in train_files]
    assert scenes[0].isdisjoint(scenes[1])
    assert scenes[0] | scenes[1] == {f"{i:05d}" for i in range(8)}
    assert [len(files) for files in train_files] == [4 * 3 * 2, 4 * 3 * 2]
    # The same global batches on one device give the same final loss.
    distributed = _final(logdir / "train", "epoch_loss")
    single = _reference_loss(folder, epochs=2, batch_size=4)
    difference = abs(distributed - single["loss"])
    print(
        f"final loss: 2 workers {distributed:.7f}, one process {single['loss']:.7f}, "
        f"difference {difference:.2e}; {seconds:.0f} s for the workers"
    )
    assert difference < LOSS_TOLERANCE
    assert abs(_final(logdir / "validation", "epoch_f1") - single["val_f1"]) < 1e-3
    _assert_threshold_chosen_on_val(logdir / "model.keras", folder / "val", outputs[0])


def _assert_threshold_chosen_on_val(model_path: Path, val_dir: Path, chief_output: str) -> None:
    """The chief chose the decision threshold on the validation split, as one device does,
    and saved it into the model: choosing again on the saved model gives the same one."""
    import re

    import keras

    from siamese_cd.data.pipeline.dataset import PairedImageDataset
    from siamese_cd.evaluation.threshold import choose_threshold

    model = keras.saving.load_model(model_path)
    saved = model.threshold
    expected, f1 = choose_threshold(
        model, PairedImageDataset(val_dir, batch_size=4), progress=False
    )
    assert saved == pytest.approx(expected, abs=1e-6)
    printed = re.search(r"Decision threshold (0\.\d+) \(val_f1 ([\d.]+) there\)", chief_output)
    assert printed is not None, chief_output
    assert float(printed.group(1)) == pytest.approx(expected, abs=5e-4)
    assert float(printed.group(2)) == pytest.approx(f1, abs=5e-4)


@pytest.mark.slow
def test_a_killed_worker_resumes_from_the_last_finished_epoch(folder, tmp_path):
    logdir = tmp_path / "run"
    args = ["train", str(folder), "--epochs", "3", "--batch-size", "4", "--logdir", str(logdir)]
    args += [*TINY, "--distribute", "multi-worker"]
    started = time.monotonic()
    # Worker 1 sends itself SIGKILL after the first batch of epoch 2.
    processes = _start_workers(2, args, tmp_path, "crash", {1: {"KILL_AT": "1,0"}})
    try:
        assert processes[1].wait(timeout=TIMEOUT) == -signal.SIGKILL
        # The chief waits for its dead peer in a collective; the job is restarted as a whole.
        try:
            processes[0].wait(timeout=5)
        except subprocess.TimeoutExpired:
            processes[0].send_signal(signal.SIGKILL)
    finally:
        _kill(processes)
    backup = logdir / "backup"
    assert (backup / "checkpoint").is_file()
    processes = _start_workers(2, args, tmp_path, "resume")
    try:
        codes = [process.wait(timeout=TIMEOUT) for process in processes]
    finally:
        _kill(processes)
    outputs = [(tmp_path / f"resume-out{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], outputs
    for output in outputs:
        assert "Resuming from epoch 2" in output
    assert "Epoch 1/3" not in outputs[0] and "Epoch 3/3" in outputs[0]
    # Epochs 2 and 3 ran again: each worker read its 4 scenes twice.
    reads = (tmp_path / "resume-reads1.txt").read_text().split()
    assert len([p for p in reads if "/train/" in p]) == 4 * 3 * 2
    assert not backup.exists()
    import keras

    model = keras.saving.load_model(logdir / "model.keras")
    assert model.optimizer.iterations.numpy() > 0
    print(f"resumed at epoch 2; crash and resume took {time.monotonic() - started:.0f} s")


MIRRORED_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
from siamese_cd import PairedImageDataset
from siamese_cd.training.run import TrainSettings, train_on_folder
val = PairedImageDataset(sys.argv[1] + "/val", batch_size=4, progress=False)
out = {}
for mode in ("none", "mirrored"):
    # Glorot's zero biases keep the two reductions' float drift under 1e-4 over two epochs.
    settings = TrainSettings(epochs=2, batch_size=4, depth=2, filters=2, dropout=0,
                             augment=False, log_dir=sys.argv[2] + "/" + mode, verbose=0,
                             distribute=mode, precision="float32", init="glorot",
                             recipe="sigmoid")
    result = train_on_folder(sys.argv[1], settings)
    out[mode] = {k: result.history[k] for k in ("loss", "f1", "val_loss", "val_f1")}
    np.save(f"{sys.argv[2]}/{mode}.npy", result.model.predict(val, verbose=0))
print("RESULT", json.dumps(out))
"""


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_equals_one_device(folder, tmp_path):
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(folder), str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    finally:
        _kill([process])
    assert process.returncode == 0, output
    assert "MirroredStrategy: 2 replica(s)" in output
    result = json.loads(output.split("RESULT ", 1)[1])
    one, two = result["none"], result["mirrored"]
    print(f"one device {one}\ntwo replicas {two}\n{time.monotonic() - started:.0f} s")
    for name in ("loss", "val_loss"):
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, err_msg=name)
    # F1 counts thresholded pixels: weights equal to float precision can still flip pixels whose
    # probability lies within that precision of 0.5, and a barely trained 2-filter network
    # holds many such pixels. So the best models' val probabilities must agree (the two
    # reductions' drift reached 4e-4 over two epochs on an AVX-512 CPU), and their decisions may
    # differ only where the probability is within that drift of 0.5.
    p_one, p_two = (np.load(tmp_path / f"{mode}.npy") for mode in ("none", "mirrored"))
    np.testing.assert_allclose(p_two, p_one, atol=1e-3)
    flipped = (p_one > 0.5) != (p_two > 0.5)
    assert np.all(np.abs(p_one[flipped] - 0.5) < 1e-3), p_one[flipped]
    if not flipped.any():
        assert two["val_f1"] == pytest.approx(one["val_f1"], abs=1e-6)
