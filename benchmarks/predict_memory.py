"""Peak memory of predicting a 4096x4096 scene against a 1024x1024 one.

    .venv/bin/python benchmarks/predict_memory.py [--sizes 1024 4096] [--tile-size 256]

Writes random 3-band GeoTIFF pairs of each size under a temporary folder, saves an FC-Siam-diff
(depth 4, 16 filters; untrained, which costs the same), and predicts each scene in a fresh
process with `predict_files` (windows of 256 overlapping by 64, batches of 8), reporting that
process's peak resident memory. Inputs are read window by window, so the growth from the small
scene to the large one should be the output itself: a float32 probability accumulator and the
uint8 mask, 5 bytes per pixel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CHILD = """
import json, resource, sys, time
from pathlib import Path
import keras
from siamese_cd.evaluation.inference import predict_files

model_path, t1, t2, out, tile, overlap = sys.argv[1:7]
model = keras.saving.load_model(model_path)
start = time.perf_counter()
predict_files(model, t1, t2, out, tile_size=int(tile), overlap=int(overlap))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak": peak}))
"""

BASELINE = """
import json, resource, sys
import keras, numpy as np
import siamese_cd  # registers the model class for loading
model = keras.saving.load_model(sys.argv[1])
tile = int(sys.argv[2])
x = np.zeros((8, tile, tile, 3), np.float32)
model.predict_on_batch((x, x))
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def write_scene(path: Path, size: int, seed: int) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    profile = dict(
        driver="GTiff", height=size, width=size, count=3, dtype="uint8", crs="EPSG:32631",
        transform=from_origin(500000.0, 4650000.0, 0.5, 0.5), tiled=True,
        blockxsize=256, blockysize=256,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as sink:
        for top in range(0, size, 256):  # written in strips, so this script stays small too
            height = min(256, size - top)
            strip = rng.integers(0, 256, (3, height, size), dtype=np.uint8)
            sink.write(strip, window=rasterio.windows.Window(0, top, size, height))


def run(code: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    args = parser.parse_args()

    from siamese_cd import SiameseChangeModel

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model_path = root / "model.keras"
        SiameseChangeModel(variant="diff", depth=4, filters=16).save(model_path)
        baseline = run(BASELINE, str(model_path), str(args.tile_size))["peak"]
        rows = []
        for size in args.sizes:
            t1, t2 = root / f"t1_{size}.tif", root / f"t2_{size}.tif"
            write_scene(t1, size, 1)
            write_scene(t2, size, 2)
            result = run(
                CHILD, str(model_path), str(t1), str(t2), str(root / f"change_{size}.tif"),
                str(args.tile_size), str(args.overlap),
            )  # fmt: skip
            rows.append((size, result["seconds"], result["peak"]))

    mib = 2**20
    print(
        f"FC-Siam-diff, windows {args.tile_size} overlapping by {args.overlap}, batches of 8; "
        f"process with the model loaded and one batch predicted: {baseline / mib:.0f} MiB\n"
    )
    print("| scene | time | peak RSS | over baseline | output arrays (5 B/pixel) |")
    print("|---|---:|---:|---:|---:|")
    for size, seconds, peak in rows:
        output = 5 * size * size
        print(
            f"| {size}x{size} | {seconds:.1f} s | {peak / mib:.0f} MiB | "
            f"{(peak - baseline) / mib:.0f} MiB | {output / mib:.0f} MiB |"
        )
    if len(rows) >= 2:
        (small, _, low), (large, _, high) = rows[0], rows[-1]
        growth = (high - low) / mib
        output_growth = 5 * (large**2 - small**2) / mib
        print(
            f"\n{large}x{large} over {small}x{small}: +{growth:.0f} MiB peak RSS for "
            f"{(large / small) ** 2:.0f}x the area; the output arrays grow by "
            f"{output_growth:.0f} MiB."
        )


if __name__ == "__main__":
    main()
