"""Reproduce Daudt, Le Saux and Boulch (ICIP 2018) on OSCD and AirChange, beside the paper.

The protocol, as far as the paper and its published code document it: random 96 x 96 patches
(``crop_size=96``, `samples_per_scene` of them per scene and epoch: as many as a stride of half
a patch cuts from the split), joint random flips and rotations, the published network and
training (the ``"paper"`` recipe of `siamese_cd.models.recipe`: PyTorch's Adam with L2, the
learning rate x 0.95 per epoch, the class-weighted NLL), batches of 32, 50 epochs, the
dataset's standard split. Each image is standardised on its own, as the published code does.
Scores are change-class precision, recall and F1 over all pixels of the test scenes (micro),
scored on whole scenes. The model of the last epoch is scored (the paper kept the best one by
training F1).

OSCD test labels are a separate release. When the test cities have no labels, the last
`HOLDOUT` cities of ``train.txt`` are held out and scored instead, and the report says so.

`PUBLISHED` holds the paper's change-class F1 (%) on OSCD as cited by secondary sources; they
could not be checked against the paper's Tables 1 and 2 here, so every printed value is marked
"secondary source". AirChange values are not given.

Example:
    >>> published_f1("oscd", "all", "diff")
    57.92
    >>> print(published_f1("airchange", "rgb", "diff"))
    None
    >>> variant_name("conc")
    'FC-Siam-conc'
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from siamese_cd.data.sampling.windows import PAPER_PATCH
from siamese_cd.errors import ConfigError

DATASETS = ("oscd", "airchange")
VARIANT_NAMES = {"ef": "FC-EF", "conc": "FC-Siam-conc", "diff": "FC-Siam-diff"}
BATCH_SIZE = 32
EPOCHS = 50
# OSCD train cities held out for scoring when the test labels are not in the download.
HOLDOUT = 3
# (dataset, bands) -> variant -> change-class F1 (%), from secondary sources citing the
# paper (arXiv 1810.08462, Tables 1 and 2); not confirmed against the paper itself.
PUBLISHED: dict[tuple[str, str], dict[str, float]] = {
    ("oscd", "rgb"): {"ef": 48.89, "diff": 48.86},
    ("oscd", "all"): {"ef": 56.91, "diff": 57.92, "conc": 51.36},
}
PUBLISHED_SOURCE = "secondary source"


def published_f1(dataset: str, bands: str, variant: str) -> float | None:
    """The published change-class F1 (%) of a variant, or None where none is recorded."""
    return PUBLISHED.get((dataset, bands), {}).get(variant)


def variant_name(variant: str) -> str:
    """The paper's name of a variant: ``"diff"`` -> ``"FC-Siam-diff"``."""
    return VARIANT_NAMES[variant]


@dataclass
class ReproduceSettings:
    """What `reproduce` runs; the defaults are the paper's protocol.

    Attributes:
        dataset: ``"oscd"`` or ``"airchange"``.
        variants: some of ``"ef"``, ``"conc"``, ``"diff"``.
        bands: OSCD bands, ``"rgb"`` or ``"all"`` (AirChange is RGB).
        epochs: epochs per variant.
        quick: a short budget that checks the pipeline end to end: 1 epoch, a depth-2
            network of 4 filters, 2 patches per scene, patches no larger than the smallest
            scene. Its scores say nothing about the paper.
        log_dir: where each variant's model, history and scores go.
        batch_size: patches per batch.
        seed: seed of patch drawing, shuffling and augmentation.
        tta: score with the 8 flips and rotations averaged.
        precision: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``
            (`siamese_cd.training.precision.dtype_policy`): the models' own dtype policy,
            for training and scoring.
        progress: show progress bars.
    """

    dataset: str
    variants: list[str] = field(default_factory=lambda: ["ef", "conc", "diff"])
    bands: str = "rgb"
    epochs: int | None = None
    quick: bool = False
    log_dir: str = "logs"
    batch_size: int | None = None
    seed: int = 0
    tta: bool = False
    precision: str = "auto"
    progress: bool = True

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        unknown = [v for v in self.variants if v not in VARIANT_NAMES]
        if unknown or not self.variants:
            raise ConfigError(f"variants must be among {list(VARIANT_NAMES)}, got {unknown}")
        if self.bands not in ("rgb", "all"):
            raise ConfigError(f"bands must be 'rgb' or 'all', got {self.bands!r}")
        if self.dataset == "airchange" and self.bands != "rgb":
            raise ConfigError("AirChange images are RGB: use bands='rgb'")
        if self.epochs is None:
            self.epochs = 1 if self.quick else EPOCHS
        if self.batch_size is None:
            self.batch_size = 4 if self.quick else BATCH_SIZE

    @property
    def depth(self) -> int:
        return 2 if self.quick else 4

    @property
    def filters(self) -> int:
        return 4 if self.quick else 16

    def run_dir(self) -> Path:
        return Path(self.log_dir) / f"reproduce-{self.dataset}-{self.bands}"


@dataclass
class Splits:
    """The training and scoring splits of a run, and how the scoring split was chosen."""

    train: object
    test: object
    note: str


def _dataset(data, split, settings: ReproduceSettings, **options):
    from siamese_cd.data.pipeline.dataset import PairedImageDataset

    bands = settings.bands if settings.dataset == "oscd" else None
    return PairedImageDataset(
        data, split=split, bands=bands, seed=settings.seed, progress=settings.progress, **options
    )


def _scoring_split(data, settings: ReproduceSettings) -> tuple[object, object, str]:
    """(train split, test split, note): the standard split, or OSCD's held-out train cities."""
    if settings.dataset == "airchange":
        return "train", "test", "standard split: test Szada/1 and Tiszadob/3, top-left 784x448"
    from siamese_cd.data.layouts.scene_layouts import hold_out, split_scenes

    test = _dataset(data, "test", settings, batch_size=1)
    if test.labelled:
        return "train", "test", f"standard split: {len(test.pairs)} test cities"
    kept, held = hold_out(split_scenes(data, "train"), HOLDOUT)
    note = (
        "OSCD test labels are not in this download (a separate release): scored on held-out "
        f"train cities {', '.join(held)}, trained on the other {len(kept)}"
    )
    return kept, held, note


def load_splits(data, settings: ReproduceSettings) -> Splits:
    """The training patches and the scoring scenes of `data`, by the protocol."""
    from siamese_cd.data.layouts.splits import scene_crops

    train_split, test_split, note = _scoring_split(data, settings)
    train = scene_crops(
        data,
        train_split,
        bands=settings.bands if settings.dataset == "oscd" else None,
        # The fake and smallest scenes are smaller than 96 pixels: quick fits the patch.
        crop_size=None if settings.quick else PAPER_PATCH,
        multiple=2**settings.depth,
        samples_per_scene=2 if settings.quick else None,
        progress=settings.progress,
        batch_size=settings.batch_size,
        seed=settings.seed,
        shuffle=True,
        augment=True,
    )
    test = _dataset(data, test_split, settings, batch_size=1)
    return Splits(train, test, note)


def variant_settings(variant: str, settings: ReproduceSettings):
    """The `TrainSettings` of one variant's run: the recipe at the protocol's budget.

    The model, the recipe and the HParams session come from them as for `train_on_folder`;
    the decision threshold stays 0.5, as the paper scores (and there is no validation split).
    """
    from siamese_cd.training.settings import TrainSettings

    return TrainSettings(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        log_dir=settings.run_dir() / variant,
        variant=variant,
        depth=settings.depth,
        filters=settings.filters,
        crop_size=None if settings.quick else PAPER_PATCH,
        precision=settings.precision,
        choose_threshold=False,
        seed=settings.seed,
        bands=settings.bands if settings.dataset == "oscd" else None,
        overwrite=True,
        recipe="paper",
    )


def train_variant(variant: str, splits: Splits, settings: ReproduceSettings) -> dict:
    """Train one variant by the recipe, save it under the run folder, and score it.

    The steps are the training pipeline's (`siamese_cd.training.pipeline`): the model in its
    precision, the callbacks without a validation split (TensorBoard and HParams in the
    variant's folder, the NaN guard) plus ``history.csv``, and `finish_run` with the last
    epoch's model and the protocol's scores (`siamese_cd.evaluation.scores.evaluate`).
    """
    import keras

    from siamese_cd.evaluation.scores import evaluate
    from siamese_cd.training.pipeline import build_callbacks, build_model, finish_run
    from siamese_cd.training.run_folder import clear_run

    run = variant_settings(variant, settings)
    folder = Path(run.log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    clear_run(run)  # a rerun replaces the variant's model and TensorBoard runs
    keras.utils.set_random_seed(settings.seed)
    model = build_model(run, splits.train.channels)
    callbacks = build_callbacks(run, None, backup=False).callbacks
    started = time.perf_counter()
    model.fit(
        splits.train,
        epochs=settings.epochs,
        verbose=1 if settings.progress else 0,
        callbacks=[*callbacks, keras.callbacks.CSVLogger(str(folder / "history.csv"))],
    )
    seconds = time.perf_counter() - started

    def score(best, test, epoch: int) -> dict:
        result = evaluate(
            best, test, split=splits.note, progress=settings.progress, tta=settings.tta
        )
        result.write_json(folder / "scores.json")
        return result.scores

    _, scores = finish_run(run.model_path, None, splits.test, model=model, score=score)
    row = {
        "variant": variant,
        **{name: scores[name] for name in ("precision", "recall", "f1")},
        "published_f1": published_f1(settings.dataset, settings.bands, variant),
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / settings.epochs,
        "model": str(run.model_path),
    }
    (folder / "row.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def format_table(rows: list[dict], settings: ReproduceSettings, note: str) -> str:
    """The side-by-side table: measured P, R, F1 (%) and the published F1 per variant."""
    bands = "13 bands" if settings.bands == "all" else "RGB"
    lines = [
        f"{settings.dataset.upper() if settings.dataset == 'oscd' else 'AirChange'} ({bands}), "
        f"{settings.epochs} epoch(s){', quick mode' if settings.quick else ''}; {note}",
        "",
        f"{'variant':<14}{'P %':>8}{'R %':>8}{'F1 %':>8}   published F1 %",
    ]
    for row in rows:
        published = row["published_f1"]
        cited = f"{published:.2f} ({PUBLISHED_SOURCE})" if published is not None else "n/a"
        lines.append(
            f"{variant_name(row['variant']):<14}{100 * row['precision']:>8.2f}"
            f"{100 * row['recall']:>8.2f}{100 * row['f1']:>8.2f}   {cited}"
        )
    lines += [
        "",
        "Published values: Daudt, Le Saux, Boulch, 'Fully Convolutional Siamese Networks for "
        "Change Detection', ICIP 2018 (arXiv 1810.08462), as cited by secondary sources; "
        "precision and recall not recorded.",
    ]
    return "\n".join(lines)


def reproduce(data: str | Path, settings: ReproduceSettings) -> tuple[list[dict], str]:
    """Train and score every variant of `settings` on `data`; returns the rows and the table.

    Writes ``<log_dir>/reproduce-<dataset>-<bands>/<variant>/{model.keras, history.csv,
    scores.json, row.json}`` with the variant's TensorBoard run (``train/``) and HParams
    session, and ``table.txt`` and ``settings.json`` beside them; a rerun replaces them.

    Raises:
        FileWriteError: if that folder cannot be created or written, before any data is read.
    """
    from siamese_cd.atomic import check_writable_folder

    # Before the data is read: a folder that cannot be written fails now, not after training.
    run = check_writable_folder(settings.run_dir(), "models and scores")
    splits = load_splits(data, settings)
    (run / "settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")
    rows = [train_variant(variant, splits, settings) for variant in settings.variants]
    table = format_table(rows, settings, splits.note)
    (run / "table.txt").write_text(table + "\n")
    return rows, table
