"""Score a model on a labelled split: change-class metrics over all pixels, and per image.

Scores are micro-averaged: true and false positives and negatives are summed over every pixel
of the split before any ratio is taken, the protocol of the published results. Whether whole
images or tiles were scored, and at which threshold, moves F1 by up to a point, so the
protocol travels with the numbers.

The model is given the files' pixels as stored (its preprocessing layer scales them). With
overlapping tiles (a stride below the tile size) every pixel is counted once, with the
prediction of the first tile that covers it.

Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> from siamese_cd.data.pipeline.dataset import PairedImageDataset
    >>> root = Path(tempfile.mkdtemp())
    >>> image, truth = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8)
    >>> truth[:8] = 255  # 256 changed pixels
    >>> for folder, array in (("time1", image), ("time2", image), ("label", truth)):
    ...     (root / folder).mkdir()
    ...     Image.fromarray(array).save(root / folder / "a.png")
    >>> class TopHalf:  # a stand-in model: change in the top 16 rows
    ...     def predict_on_batch(self, inputs):
    ...         probability = np.zeros((*inputs[0].shape[:3], 1), np.float32)
    ...         probability[:, :16] = 1.0
    ...         return probability
    >>> result = evaluate(TopHalf(), PairedImageDataset(root), progress=False)
    >>> result.counts
    {'tp': 256, 'fp': 256, 'fn': 0, 'tn': 512}
    >>> round(result.scores["f1"], 4)
    0.6667
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from siamese_cd.atomic import atomic_path, write_text
from siamese_cd.errors import ConfigError, DatasetError
from siamese_cd.evaluation.tta import with_tta
from siamese_cd.models.losses import change_probability
from siamese_cd.models.metrics import SCORE_NAMES, scores_from_counts
from siamese_cd.models.preprocessing import check_served_pixels

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
        """The counts and scores as JSON, written atomically (see `siamese_cd.atomic`)."""
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def write_per_image(self, path: str | Path) -> None:
        """One CSV row per image: stem, the four counts and the six scores."""
        with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["stem", *COUNTS, *SCORE_NAMES])
            writer.writeheader()
            for row in self.per_image:
                writer.writerow(
                    {k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()}
                )


def _check_dataset(model, dataset) -> None:
    """Raise if `dataset` would not give every labelled sample once, as the model takes it."""
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
    # Now, not from inside the model's first call: the warning then precedes the progress bar.
    check_served_pixels(model, getattr(dataset, "pixel_dtype", None))


def confusion(predicted: np.ndarray, actual: np.ndarray, where=None) -> tuple[int, ...]:
    """``(tp, fp, fn, tn)`` of two boolean maps of the same shape, over `where` if given."""
    cells = (predicted & actual, predicted & ~actual, ~predicted & actual, ~predicted & ~actual)
    if where is not None:
        cells = tuple(cell & where for cell in cells)
    return tuple(np.count_nonzero(cell) for cell in cells)


class PixelTally:
    """Per-scene ``(tp, fp, fn, tn)``, counting every pixel of a scene once.

    Tiles arrive scene by scene (the dataset is not shuffled). A tile's pixels already
    counted by an earlier, overlapping tile of the same scene are left out, so with
    overlapping tiles each pixel is scored once, by the first tile covering it. Only the
    current scene's coverage map is held.

    Example:
        >>> tally = PixelTally(scenes=1)
        >>> tile = np.ones((4, 4), bool)
        >>> tally.add(0, tile, tile, window=(0, 0, 4, 4))
        >>> tally.add(0, tile, tile, window=(0, 2, 4, 4))  # half of it was counted already
        >>> tally.per_scene[0].tolist()
        [24, 0, 0, 0]
    """

    def __init__(self, scenes: int):
        self.per_scene = np.zeros((scenes, 4), np.int64)
        self._scene: int | None = None
        self._covered = np.zeros((0, 0), bool)

    def add(self, scene: int, predicted, actual, window=None) -> None:
        """Count a sample: a whole scene (`window` None) or the tile ``(top, left, h, w)``."""
        if window is None:
            self.per_scene[scene] += confusion(predicted, actual)
            return
        top, left, height, width = window
        need = (top + height, left + width)
        if scene != self._scene:
            self._scene, self._covered = scene, np.zeros(need, bool)
        elif self._covered.shape[0] < need[0] or self._covered.shape[1] < need[1]:
            grown = np.zeros(np.maximum(self._covered.shape, need), bool)
            grown[: self._covered.shape[0], : self._covered.shape[1]] = self._covered
            self._covered = grown
        covered = self._covered[top : top + height, left : left + width]
        self.per_scene[scene] += confusion(predicted, actual, where=~covered)
        covered[:] = True


def _batches(dataset):
    """The dataset's batches in order, one decoded ahead while the model scores another."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(dataset.__getitem__, 0)
        for index in range(len(dataset)):
            batch = pending.result()
            if index + 1 < len(dataset):
                pending = pool.submit(dataset.__getitem__, index + 1)
            yield index, batch


def _protocol(dataset, split: str | None, threshold: float) -> dict:
    tiles = dataset.tiles
    return {
        "split": split or str(dataset.root or dataset.pairs[0].t1.parent),
        "pairs": len(dataset.pairs),
        "samples": dataset.num_samples,
        "images": "tiles" if tiles is not None else "whole",
        "tile_size": list(tiles.tile) if tiles is not None else None,
        "tile_stride": list(tiles.stride) if tiles is not None else None,
        "threshold": threshold,
    }


def evaluate(
    model,
    dataset,
    threshold: float | None = None,
    split: str | None = None,
    progress: bool = True,
    tta: bool = False,
) -> Evaluation:
    """Score `model` on every sample of a labelled `PairedImageDataset`.

    Args:
        model: a change model taking ``(t1, t2)`` batches of raw pixels.
        dataset: labelled, not shuffled, not augmented, without random crops; with
            ``tile_size`` its tiles are scored, each pixel once even where tiles overlap.
        threshold: probability at or above which a pixel is change; default the model's
            ``threshold`` (0.5).
        split: name of the split for the report; default the dataset's folder.
        progress: show a progress bar over batches.
        tta: average the probabilities of the 8 flips and rotations of each batch
            (`siamese_cd.evaluation.tta`); 8 times the model calls.

    Returns:
        An `Evaluation` with counts, scores, the protocol and per-image rows.

    Raises:
        DatasetError: for an unlabelled, shuffled, augmented or cropping dataset.
        ConfigError: if the dataset's bands do not fit the model.
    """
    _check_dataset(model, dataset)
    if threshold is None:
        threshold = float(getattr(model, "threshold", 0.5))
    model = with_tta(model, tta)
    tally = PixelTally(len(dataset.pairs))
    tiles = dataset.tiles
    bar = tqdm(total=dataset.num_samples, desc="Scoring", unit="sample", disable=not progress)
    for index, ((t1, t2), mask) in _batches(dataset):
        probability = change_probability(np.asarray(model.predict_on_batch((t1, t2))))
        predicted = probability[..., 0] >= threshold
        actual = mask[..., 0] >= 0.5
        for offset in range(len(mask)):
            sample = index * dataset.batch_size + offset
            scene, window = tiles.locate(sample) if tiles is not None else (sample, None)
            tally.add(scene, predicted[offset], actual[offset], window)
        bar.update(len(mask))
    bar.close()
    total = tally.per_scene.sum(axis=0)
    per_image = [
        {"stem": pair.stem, **dict(zip(COUNTS, map(int, counts))), **scores(counts)}
        for pair, counts in zip(dataset.pairs, tally.per_scene)
    ]
    protocol = {**_protocol(dataset, split, threshold), "tta": tta}
    return Evaluation(dict(zip(COUNTS, map(int, total))), scores(total), protocol, per_image)
