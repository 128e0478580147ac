"""What the model sees of a scene: windows and tiles, random crops, augmentation.

- `siamese_cd.data.sampling.windows`: tiles, random and central windows, the paper's patch;
- `siamese_cd.data.sampling.crops`: options of crop sampling and the masks it remembers;
- `siamese_cd.data.sampling.augment`: `Augment`, flips, rotations, zoom, radiometric jitter.

Names are imported on first use (`siamese_cd.data.lazy`).
"""

from siamese_cd.data.lazy import lazy_exports

_EXPORTS = {
    "Augment": "siamese_cd.data.sampling.augment",
    "TileIndex": "siamese_cd.data.sampling.windows",
    "center_window": "siamese_cd.data.sampling.windows",
    "cut_windows": "siamese_cd.data.sampling.windows",
    "patch_for": "siamese_cd.data.sampling.windows",
    "patches_per_scene": "siamese_cd.data.sampling.windows",
    "random_window": "siamese_cd.data.sampling.windows",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
