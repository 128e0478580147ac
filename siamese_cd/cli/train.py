"""``siamese-cd train``: train on DATA/train, validate on DATA/val, score DATA/test."""

from __future__ import annotations

import argparse

from siamese_cd.cli.arguments import (
    add_data_options,
    add_oscd_bands_argument,
    add_precision_argument,
    filters_arg,
    loss_name,
    positive_int,
)
from siamese_cd.models.recipe_names import DEFAULT_RECIPE, RECIPES

HELP = "train a model on DATA/train, validate on DATA/val, score DATA/test"
DESCRIPTION = (
    "Train the published network with the published training (--recipe paper: PyTorch's "
    "Adam with L2 weight decay, the learning rate x 0.95 every epoch, the class-weighted NLL "
    "on a 2-class head) with flips and rotations, then choose the decision threshold on "
    "DATA/val. Pixels are read as stored and scaled inside the model (--preprocessing). "
    "Keeps the checkpoint with the best val_f1 and scores it on DATA/test when that split "
    "exists. DATA may also be an OSCD or AirChange download: it is trained on 96x96 crops "
    "of its training scenes, validated on two held-out ones and scored on its test split. "
    "A killed or interrupted (Ctrl-C, exit status 130) run resumes from its last finished "
    "epoch when the same command is run again; a LOGDIR holding a finished run is refused "
    "unless --overwrite is given."
)
PREPROCESSING = ("per_image", "per_image_band", "unit", "standardize", "auto")


def _loss_arg(text: str) -> str:
    """``auto`` (the recipe's loss) or a loss name."""
    return text if text == "auto" else loss_name(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        help="folder holding train/ and val/ (and optionally test/), or an OSCD or AirChange "
        "download",
    )
    parser.add_argument("--epochs", type=positive_int, default=50, help="epochs (default 50)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="default 16")
    parser.add_argument(
        "--logdir", default="logs/run", help="TensorBoard run folder (default logs/run)"
    )
    parser.add_argument(
        "--out", default=None, help="best model file, .keras (default LOGDIR/model.keras)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run in LOGDIR (its TensorBoard event files, model and "
        "record) and any backup, starting again from the first epoch; without it such a "
        "folder is refused, while a killed run (LOGDIR/backup) resumes",
    )
    _add_model_arguments(parser)
    _add_training_arguments(parser)
    add_precision_argument(parser)
    add_oscd_bands_argument(parser, "all 13")
    add_data_options(parser)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", choices=("diff", "conc", "ef"), default="diff")
    parser.add_argument("--depth", type=int, default=4, help="encoder levels, 2-6 (default 4)")
    parser.add_argument(
        "--filters",
        type=filters_arg,
        default=16,
        help="first-level width, doubled per level, or one width per level: 8,16,32,64",
    )
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default=DEFAULT_RECIPE,
        help="paper (default): the published network and training, 2-class softmax head on "
        "PyTorch's pixel grid, PyTorch's Adam with L2, class-weighted NLL; sigmoid: a sigmoid "
        "head trained with Keras's Adam (decoupled weight decay) and --loss",
    )
    parser.add_argument(
        "--preprocessing",
        choices=PREPROCESSING,
        default=None,
        help="how the model scales pixels: per_image (each image standardised on its own, as "
        "published; the paper recipe's), per_image_band (the same per band), unit (divide by "
        "the pixel type's maximum), standardize (per-band mean and std of DATA/train), or "
        "auto (unit for 8-bit images, standardize for others; the sigmoid recipe's)",
    )
    parser.add_argument(
        "--loss",
        type=_loss_arg,
        default="auto",
        help="auto (the recipe's; default), or with --recipe sigmoid: bce (class-weighted), "
        "dice, focal, or a sum such as bce+dice",
    )
    parser.add_argument(
        "--dropout", type=float, default=0.2, help="spatial dropout of the model (default 0.2)"
    )
    parser.add_argument(
        "--init",
        choices=("torch", "glorot"),
        default="torch",
        help="initialisation of the convolutions: torch (U(+-1/sqrt(fan_in)), the default) "
        "or glorot (Keras's)",
    )


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="initial learning rate (default: the recipe's, "
        "siamese_cd.models.recipe.LEARNING_RATE)",
    )
    parser.add_argument("--no-augment", action="store_true", help="no flips or rotations")
    parser.add_argument(
        "--crop-size",
        type=positive_int,
        help="train on one random crop of this side per scene and epoch (large scenes; OSCD "
        "and AirChange: 96, several per scene)",
    )
    parser.add_argument(
        "--early-stopping",
        type=positive_int,
        metavar="EPOCHS",
        help="stop after this many epochs without a better val_f1 (default: never)",
    )
    parser.add_argument(
        "--choose-threshold",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after training, choose the decision threshold with the best F1 on DATA/val and "
        "save it with the model, which evaluate and predict then use (default); "
        "--no-choose-threshold keeps 0.5",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--distribute",
        choices=("auto", "none", "mirrored", "multi-worker"),
        default="auto",
        help="mirrored: every local GPU; multi-worker: the machines TF_CONFIG names (worker 0 "
        "writes the model and logs); auto (default): multi-worker with TF_CONFIG, mirrored "
        "with several GPUs, else none. --batch-size is the global batch",
    )


def run(args: argparse.Namespace) -> int:
    from siamese_cd.training.run import TrainSettings, train_on_folder

    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        log_dir=args.logdir,
        out=args.out,
        variant=args.variant,
        depth=args.depth,
        filters=args.filters,
        recipe=args.recipe,
        preprocessing=args.preprocessing,
        loss=args.loss,
        learning_rate=args.lr,
        augment=not args.no_augment,
        crop_size=args.crop_size,
        precision=args.precision,
        early_stopping=args.early_stopping,
        choose_threshold=args.choose_threshold,
        seed=args.seed,
        dropout=args.dropout,
        init=args.init,
        distribute=args.distribute,
        label_threshold=args.label_threshold,
        on_missing=args.on_missing,
        bands=args.bands,
        overwrite=args.overwrite,
    )
    train_on_folder(args.data, settings)
    return 0
