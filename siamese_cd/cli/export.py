"""``siamese-cd export``: a ``.keras`` change model as a SavedModel, ONNX or LiteRT file.

The export itself is `siamese_cd.evaluation.export`; this command checks the format, the
output's name and the installed converters before it loads the model.
"""

from __future__ import annotations

import argparse

HELP = "export a .keras model as a SavedModel, ONNX or LiteRT file for serving"
DESCRIPTION = (
    "Write MODEL as a SavedModel folder, an ONNX file (.onnx) or a LiteRT file (.tflite) "
    "holding the whole model: inputs t1 and t2 (batch, height, width, bands) of any size in "
    "the training pixel type, the preprocessing inside, outputs probability (float32 change "
    "probability) and mask (uint8, 1 at or above the model's threshold). Computed in float32; "
    "the file is run by its own runtime and compared with the Keras model before it is kept. "
    "ONNX and LiteRT need the converters: pip install 'siamese_cd[export]'."
)
# The names of `siamese_cd.evaluation.export.FORMATS` (not imported: it imports Keras).
FORMATS = ("saved_model", "onnx", "litert")
PIXEL_TYPES = ("uint8", "uint16", "float32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the .keras model")
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="saved_model (a folder), onnx (a .onnx file) or litert (a .tflite file)",
    )
    parser.add_argument(
        "-o", "--out", required=True, help="the .onnx or .tflite file, or the SavedModel folder"
    )
    parser.add_argument(
        "--pixel-type",
        choices=PIXEL_TYPES,
        default=None,
        help="pixel type of the inputs (default: the training data's, float32 if unknown)",
    )


def run(args: argparse.Namespace) -> int:
    from siamese_cd.evaluation.export import check_export_request, export_model
    from siamese_cd.evaluation.runtimes import FORMAT_NAMES
    from siamese_cd.models.loading import load_change_model

    # The format, the output's name and the converters, before the model is loaded.
    out = check_export_request(args.out, args.format)
    model = load_change_model(args.model)
    summary = export_model(model, out, args.format, pixel_dtype=args.pixel_type)
    print(
        f"Wrote {summary.path} ({FORMAT_NAMES[summary.format]}): inputs t1, t2 of "
        f"{summary.pixel_dtype} pixels (batch, height, width, {model.in_channels}); outputs "
        f"probability and mask at threshold {model.threshold:g}; largest difference from the "
        f"Keras model's probability {summary.largest_difference:.1e}"
    )
    return 0
