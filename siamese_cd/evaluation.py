"""Score a model on a labelled split: change-class metrics over all pixels, and per image.

Scores are micro-averaged: true and false positives and negatives are summed over every pixel
of the split before any ratio is taken, the protocol of the published results. Whether whole
images or tiles were scored, and at which threshold, moves F1 by up to a point, so the
protocol travels with the numbers.

Example:
    >>> test = PairedImageDataset("data/SYSU-CD/test", batch_size=16)  # doctest: +SKIP
    >>> result = evaluate(model, test)  # doctest: +SKIP
    >>> print(result.format())  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from siamese_cd.data.decoding import as_float_pixels
from siamese_cd.errors import ConfigError, DatasetError
from siamese_cd.losses import change_probability
from siamese_cd.metrics import SCORE_NAMES, scores_from_counts

COUNTS = ("tp", "fp", "fn", "tn")


def scores(counts: np.ndarray) -> dict[str, float]:
    """The change-class scores of ``(tp, fp, fn, tn)`` counts, as Python floats."""
    values = scores_from_counts(*(np.float64(c) for c in counts))
    return {name: float(np.asarray(values[name])) for name in SCORE_NAMES}


@dataclass
class Evaluation:
    """What `evaluate` measured.

    Attributes:
        counts: ``{"tp", "fp", "fn", "tn"}`` pixel counts over the split.
        scores: precision, recall, f1, iou, overall_accuracy and kappa of the change class.
        protocol: how it was measured: split, pairs, samples, images ("whole" or "tiles"),
            tile size and stride, threshold.
        per_image: one row per image: its stem, counts and scores.
    """

    counts: dict[str, int]
    scores: dict[str, float]
    protocol: dict
    per_image: list[dict] = field(default_factory=list)

    def format(self) -> str:
        """A human-readable report: protocol, confusion matrix and scores."""
        p = self.protocol
        if p["images"] == "tiles":
            how = f"tiles of {p['tile_size']} every {p['tile_stride']} ({p['samples']} tiles)"
        else:
            how = "whole images"
        c = self.counts
        width = max(len(f"{v:,}") for v in c.values())
        lines = [
            f"Protocol: {p['split']} ({p['pairs']} pairs), {how}, threshold {p['threshold']}, "
            "all pixels (micro)",
            "",
            f"{'':18}{'predicted change':>{width + 18}}{'predicted no change':>{width + 21}}",
            f"{'true change':18}{c['tp']:>{width + 18},}{c['fn']:>{width + 21},}",
            f"{'true no change':18}{c['fp']:>{width + 18},}{c['tn']:>{width + 21},}",
            "",
            "  ".join(f"{name} {self.scores[name]:.4f}" for name in SCORE_NAMES),
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "counts": self.counts, "scores": self.scores}

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def write_per_image(self, path: str | Path) -> None:
        """One CSV row per image: stem, the four counts and the six scores."""
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["stem", *COUNTS, *SCORE_NAMES])
            writer.writeheader()
            for row in self.per_image:
                writer.writerow(
                    {k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()}
                )


def evaluate(
    model,
    dataset,
    threshold: float | None = None,
    split: str | None = None,
    progress: bool = True,
) -> Evaluation:
    """Score `model` on every sample of a labelled `PairedImageDataset`.

    Args:
        model: a change model taking ``(t1, t2)`` batches.
        dataset: labelled, not shuffled, not augmented, without random crops; with
            ``tile_size`` its tiles are scored (a tile stride below the tile size counts
            shared pixels more than once).
        threshold: probability at or above which a pixel is change; default the model's
            ``threshold`` (0.5).
        split: name of the split for the report; default the dataset's folder.
        progress: show a progress bar over batches.

    Returns:
        An `Evaluation` with counts, scores, the protocol and per-image rows.

    Raises:
        DatasetError: for an unlabelled, shuffled, augmented or cropping dataset.
        ConfigError: if the dataset's bands do not fit the model.
    """
    if not dataset.labelled:
        raise DatasetError("evaluate needs labels; this dataset has none")
    if dataset.shuffle or dataset.augment is not None or dataset.crop_size is not None:
        raise DatasetError(
            "evaluate needs every sample once, as it is: make the dataset without shuffle, "
            "augment or crop_size (use tile_size for large scenes)"
        )
    expected = getattr(model, "in_channels", None)
    if expected is not None and dataset.channels != expected:
        raise ConfigError(
            f"{dataset.pairs[0].t1}: {dataset.channels} band(s), but the model takes {expected}"
        )
    if threshold is None:
        threshold = float(getattr(model, "threshold", 0.5))
    per_scene = np.zeros((len(dataset.pairs), 4), np.int64)
    bar = tqdm(total=dataset.num_samples, desc="Scoring", unit="sample", disable=not progress)
    # One batch is decoded ahead while the model scores the current one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(dataset.__getitem__, 0)
        for index in range(len(dataset)):
            (t1, t2), mask = pending.result()
            if index + 1 < len(dataset):
                pending = pool.submit(dataset.__getitem__, index + 1)
            # Floats in [0, 1] for any model, also one that does not scale integer pixels.
            inputs = (as_float_pixels(t1), as_float_pixels(t2))
            probability = change_probability(np.asarray(model.predict_on_batch(inputs)))
            predicted = probability[..., 0] >= threshold
            actual = mask[..., 0] >= 0.5
            first = index * dataset.batch_size
            for offset in range(len(mask)):
                sample = first + offset
                scene = dataset.tiles.locate(sample)[0] if dataset.tiles is not None else sample
                p, a = predicted[offset], actual[offset]
                per_scene[scene] += (
                    np.count_nonzero(p & a),
                    np.count_nonzero(p & ~a),
                    np.count_nonzero(~p & a),
                    np.count_nonzero(~p & ~a),
                )
            bar.update(len(mask))
    bar.close()

    total = per_scene.sum(axis=0)
    tiles = dataset.tiles
    protocol = {
        "split": split or str(dataset.root or dataset.pairs[0].t1.parent),
        "pairs": len(dataset.pairs),
        "samples": dataset.num_samples,
        "images": "tiles" if tiles is not None else "whole",
        "tile_size": list(tiles.tile) if tiles is not None else None,
        "tile_stride": list(tiles.stride) if tiles is not None else None,
        "threshold": threshold,
    }
    per_image = [
        {"stem": pair.stem, **dict(zip(COUNTS, map(int, counts))), **scores(counts)}
        for pair, counts in zip(dataset.pairs, per_scene)
    ]
    return Evaluation(dict(zip(COUNTS, map(int, total))), scores(total), protocol, per_image)
