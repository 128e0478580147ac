"""``siamese-cd convert-torch``: a checkpoint of the authors' PyTorch code as a ``.keras`` model.

PyTorch is needed only to unpickle the ``.pth`` file (``pip install 'siamese_cd[torch]'``);
the conversion itself is `siamese_cd.models.torch_weights`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from siamese_cd.errors import CheckpointError

HELP = "convert a checkpoint of the published PyTorch networks to a .keras model"
DESCRIPTION = (
    "Read a state_dict saved by the authors' code (rcdaudt/fully_convolutional_change_"
    "detection: SiamUnet_diff, SiamUnet_conc or Unet, any band count, 2 classes) and write a "
    "SiameseChangeModel with the same weights on PyTorch's pixel grid: its change probability "
    "is exp(output[:, 1]) of the PyTorch network. The model standardises each image on its "
    "own, as the authors' notebook does (--preprocessing). Needs PyTorch to read the file: "
    "pip install 'siamese_cd[torch]'."
)
TORCH_HINT = "pip install 'siamese_cd[torch]'"
# Keys under which training scripts often wrap the state_dict in a checkpoint dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="the .pth / .pth.tar file (torch.save(net.state_dict()))"
    )
    parser.add_argument(
        "--variant",
        required=True,
        choices=("diff", "conc", "ef"),
        help="diff (SiamUnet_diff), conc (SiamUnet_conc) or ef (Unet, FC-EF)",
    )
    parser.add_argument("-o", "--out", required=True, help="the .keras file to write")
    parser.add_argument(
        "--num-classes",
        type=int,
        choices=(1, 2),
        default=2,
        help="2 keeps the published softmax head (default); 1 folds it into one sigmoid "
        "channel with the same change probability",
    )
    parser.add_argument(
        "--preprocessing",
        choices=("per_image", "per_image_band", "unit"),
        default="per_image",
        help="how the model scales pixels: per_image ((I - mean) / std of each image over all "
        "its bands, the notebook's, default), per_image_band (the same per band), unit "
        "(divide by the pixel type's maximum)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read files holding pickled Python objects (e.g. a whole nn.Module); this "
        "runs code from the file, so use it only for files you trust",
    )


def read_checkpoint(path: Path, allow_pickle: bool = False) -> Mapping:
    """The state_dict in a ``.pth`` file, unwrapped from a checkpoint dict or a module.

    Raises:
        CheckpointError: the file is missing, PyTorch is not installed, the file is not a
            PyTorch file, or it holds pickled objects and `allow_pickle` is off.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file" + (" (a folder)" if path.is_dir() else ""))
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path}: reading a PyTorch checkpoint needs PyTorch, which is not installed: "
            f"{TORCH_HINT} (the converted model then runs without it)"
        ) from None
    try:
        content = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as error:  # torch raises pickle, zip and runtime errors alike
        if "weights_only" in str(error) or "Weights only load failed" in str(error):
            raise CheckpointError(
                f"{path}: holds pickled Python objects besides tensors (e.g. a whole "
                "nn.Module), which are read only with --allow-pickle; that runs code from the "
                "file, so use it only for a file you trust"
            ) from None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {first_line})"
        ) from None
    return unwrap_state_dict(content, path)


def unwrap_state_dict(content, path: Path) -> Mapping:
    """`content` of a checkpoint file reduced to its state_dict."""
    if hasattr(content, "state_dict") and callable(content.state_dict):  # an nn.Module
        return content.state_dict()
    if isinstance(content, Mapping):
        for key in WRAPPER_KEYS:
            if key in content and not hasattr(content[key], "shape"):
                return unwrap_state_dict(content[key], path)
        return content
    raise CheckpointError(
        f"{path}: holds a {type(content).__name__}, not a state_dict (a mapping of parameter "
        "names to tensors)"
    )


def run(args: argparse.Namespace) -> int:
    from siamese_cd.atomic import atomic_path
    from siamese_cd.models.siamese import SiameseChangeModel

    path, out = Path(args.checkpoint), Path(args.out)
    if out.suffix != ".keras":
        raise CheckpointError(f"{out}: the output must be a .keras file")
    state = read_checkpoint(path, allow_pickle=args.allow_pickle)
    model = SiameseChangeModel.from_torch_state_dict(
        state,
        variant=args.variant,
        num_classes=args.num_classes,
        preprocessing=args.preprocessing,
        source=str(path),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary:
        model.save(temporary)
    name = "FC-EF" if args.variant == "ef" else f"FC-Siam-{args.variant}"
    head = "2-class softmax" if model.num_classes == 2 else "sigmoid"
    print(
        f"Wrote {out}: {name}, {model.in_channels} bands, widths {model.widths}, {head} head, "
        f"{args.preprocessing} preprocessing"
    )
    return 0
