"""Synthetic change-detection data: rendered scenes and the files of a dataset.

- `siamese_cd.data.synthetic.generate`: `make_synthetic_dataset`, a dataset on disk;
- `siamese_cd.data.synthetic.render`: `render_pair`, one scene's two dates and mask;
- `siamese_cd.data.synthetic.files`: writing pairs as PNG or GeoTIFF.

Names are imported on first use (`siamese_cd.data.lazy`).
"""

from siamese_cd.data.lazy import lazy_exports

_EXPORTS = {
    "make_synthetic_dataset": "siamese_cd.data.synthetic.generate",
    "render_pair": "siamese_cd.data.synthetic.render",
    "write_pair": "siamese_cd.data.synthetic.files",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
