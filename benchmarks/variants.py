"""Test scores of FC-EF, FC-Siam-conc and FC-Siam-diff on the synthetic benchmark split.

    .venv/bin/python benchmarks/variants.py [--data data/synthetic] [--epochs 12]

Makes the synthetic dataset of `make demo` if it is missing (1,000 / 100 / 200 pairs of
64x64, seed 0), trains each variant with the `siamese-cd train` recipe (depth 4, 16 filters,
Adam 1e-3 with weight decay 1e-4, lr x 0.95 per epoch, flips and rotations, class-weighted
cross-entropy), keeps the checkpoint with the best val_f1 and prints a Markdown table of its
change-class scores over all test pixels (whole 64x64 images, threshold 0.5).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from siamese_cd.data.synthetic.generate import MANIFEST_NAME, make_synthetic_dataset  # noqa: E402
from siamese_cd.training.run import train_on_folder  # noqa: E402

NAMES = {"ef": "FC-EF", "conc": "FC-Siam-conc", "diff": "FC-Siam-diff"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--logdir", default="logs/variants")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / MANIFEST_NAME).is_file():
        make_synthetic_dataset(data, train=1000, val=100, test=200, size=64, seed=0)
    rows = []
    for variant, name in NAMES.items():
        start = time.perf_counter()
        result = train_on_folder(
            data,
            epochs=args.epochs,
            log_dir=Path(args.logdir) / variant,
            variant=variant,
            seed=args.seed,
            verbose=0,
            overwrite=True,  # a rerun measures afresh, replacing the previous run's logs
        )
        minutes = (time.perf_counter() - start) / 60
        params = sum(int(w.numpy().size) for w in result.model.trainable_weights)
        rows.append((name, params, result.test_scores, minutes))

    print(f"\n{args.epochs} epochs, seed {args.seed}, test split of {data}:\n")
    print("| model | trainable params | P | R | F1 | IoU | train time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, params, scores, minutes in rows:
        p, r, f1, iou = (100 * scores[k] for k in ("precision", "recall", "f1", "iou"))
        scores_text = f"{p:.2f} | {r:.2f} | {f1:.2f} | {iou:.2f}"
        print(f"| {name} | {params:,} | {scores_text} | {minutes:.1f} min |")


if __name__ == "__main__":
    main()
