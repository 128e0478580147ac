"""``siamese-cd synth``: write a synthetic change-detection dataset in the SYSU-CD layout."""

from __future__ import annotations

import argparse

from siamese_cd.cli.arguments import non_negative_int, positive_int

HELP = "write a synthetic change-detection dataset in the SYSU-CD layout"
DESCRIPTION = (
    "Write OUT/{train,val,test}/{time1,time2,label}/NNNNN.png (or .tif for 16-bit or "
    "multi-band GeoTIFF pairs). Buildings and roads appear or vanish (labelled); "
    "illumination, season, noise and a sub-pixel misregistration also change (not labelled)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder")
    parser.add_argument(
        "--train", type=non_negative_int, default=1000, help="training pairs (default 1000)"
    )
    parser.add_argument(
        "--val", type=non_negative_int, default=100, help="validation pairs (default 100)"
    )
    parser.add_argument(
        "--test", type=non_negative_int, default=200, help="test pairs (default 200)"
    )
    parser.add_argument("--size", type=positive_int, default=64, help="image side (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--bands",
        type=positive_int,
        default=3,
        help="bands per image (default 3; other counts write GeoTIFFs)",
    )
    parser.add_argument(
        "--dtype",
        choices=("uint8", "uint16"),
        default="uint8",
        help="pixel type (default uint8; uint16 writes reflectance-like GeoTIFFs around 1,500)",
    )


def run(args: argparse.Namespace) -> int:
    from siamese_cd.data.synthetic.generate import make_synthetic_dataset

    out = make_synthetic_dataset(
        args.out,
        train=args.train,
        val=args.val,
        test=args.test,
        size=args.size,
        seed=args.seed,
        bands=args.bands,
        dtype=args.dtype,
    )
    print(f"Wrote a synthetic dataset to {out}")
    return 0
