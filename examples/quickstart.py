"""Quick start: train FC-Siam-diff on the synthetic dataset and watch it in TensorBoard.

Run from the repository root:

    .venv/bin/python examples/quickstart.py

then open TensorBoard with `.venv/bin/tensorboard --logdir logs`. The IMAGES tab shows, for
the same validation samples at every epoch, t1 | t2 | truth | prediction | errors |
probability. `--quick` trains a small network for one epoch on a tiny dataset in a temporary
folder: a check that the script runs.
"""

import argparse
import tempfile
from pathlib import Path

import keras

from siamese_cd import PairedImageDataset, SiameseChangeModel
from siamese_cd.callbacks import MaskImageLogger
from siamese_cd.data.synthetic.generate import make_synthetic_dataset

parser = argparse.ArgumentParser(description="Train FC-Siam-diff on the synthetic dataset.")
parser.add_argument("--quick", action="store_true", help="tiny data and network, one epoch")
args = parser.parse_args()
if args.quick:  # nothing is written under data/ or logs/
    root = Path(tempfile.mkdtemp(prefix="siamese_cd_quickstart_"))
    DATA, LOGS, EPOCHS = root / "data", root / "logs", 1
    SPLITS, NETWORK = dict(train=16, val=8, test=8, size=32), dict(depth=2, filters=4)
else:
    DATA, LOGS, EPOCHS = Path("data/synthetic"), Path("logs"), 10
    SPLITS, NETWORK = dict(train=1000, val=100, test=200, size=64), dict(depth=4, filters=16)

# ## 1. Data
# A change-detection dataset is a folder per split, each with one folder per date and one for
# the masks. The synthetic one uses the SYSU-CD layout: {train,val,test}/{time1,time2,label}.
# Buildings and roads appear or vanish between the dates (labelled); the light, the season,
# sensor noise and a sub-pixel shift also change (not labelled), as in real imagery.
if not (DATA / "synthetic.json").exists():
    make_synthetic_dataset(DATA, **SPLITS, seed=0)

# Files are paired by name, never by position, and decoded batch by batch: memory does not
# grow with the number of pairs. Training samples are reshuffled and flipped/rotated
# (both dates and the mask together) every epoch.
train = PairedImageDataset(DATA / "train", batch_size=16, augment=True, shuffle=True, seed=0)
val = PairedImageDataset(DATA / "val", batch_size=16)
test = PairedImageDataset(DATA / "test", batch_size=16)
# Images come as the files' own uint8 pixels, four times smaller than float32; the model
# scales them itself, in its preprocessing layer. Masks are float32 0/1.
(t1, t2), mask = train[0]
print("A batch:", t1.shape, t1.dtype, t2.shape, mask.shape, mask.dtype)

# ## 2. Model
# FC-Siam-diff: one encoder with shared weights runs on both dates, and the decoder sees the
# absolute difference of their features at every level. Depth 4 with 16 filters is the
# published network; the defaults are the authors' PyTorch network to the pixel, with its
# 2-class softmax head (channel 1 is change) and each image standardised on its own.
keras.utils.set_random_seed(0)
model = SiameseChangeModel(variant="diff", **NETWORK)

# `compile()` is the published training: PyTorch's Adam at 1e-3 with L2 1e-4, the learning
# rate x 0.95 per epoch, and the class-weighted NLL: `fit` reads the change fraction of the
# training masks once and weights the rarer change class up.
model.compile()

# ## 3. Training, with TensorBoard scalars and mask images
# The TensorBoard callback writes logs/quickstart/{train,validation}; MaskImageLogger writes
# logs/quickstart/images beside them. Precision, recall, F1 and IoU of the change class are
# computed from confusion counts summed over the whole epoch.
log_dir = str(LOGS / "quickstart")
model.fit(
    train,
    validation_data=val,
    epochs=EPOCHS,
    callbacks=[
        keras.callbacks.TensorBoard(log_dir, write_graph=False),
        MaskImageLogger(val, log_dir=log_dir),
    ],
)

# ## 4. Score the test split and save
scores = model.evaluate(test, return_dict=True, verbose=0)
print("Test:", {name: round(scores[name], 4) for name in ("precision", "recall", "f1", "iou")})
model.save(f"{log_dir}/model.keras")
reloaded = keras.saving.load_model(f"{log_dir}/model.keras")
print("Reloaded model F1:", round(reloaded.evaluate(test, return_dict=True, verbose=0)["f1"], 4))
print(f"Now run: .venv/bin/tensorboard --logdir {LOGS}")
