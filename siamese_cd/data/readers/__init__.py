"""Reading image files into arrays: decoders, pixel checks, georeferencing, undecodable files.

- `siamese_cd.data.readers.decoding`: `read_image`, `read_label`, `image_size` and the rules
  for bands, alpha, bit depth and label binarisation;
- `siamese_cd.data.readers.pixel_checks`: NaN/inf pixels and labels below the threshold;
- `siamese_cd.data.readers.georeference`: the CRS and transform of GeoTIFF pairs;
- `siamese_cd.data.readers.undecodable`: naming the file TensorFlow could not decode.

Names are imported on first use (`siamese_cd.data.lazy`).
"""

from siamese_cd.data.lazy import lazy_exports

_EXPORTS = {
    "Grid": "siamese_cd.data.readers.georeference",
    "binarize_label": "siamese_cd.data.readers.decoding",
    "check_finite": "siamese_cd.data.readers.pixel_checks",
    "check_same_grid": "siamese_cd.data.readers.georeference",
    "grid_mismatch": "siamese_cd.data.readers.georeference",
    "image_size": "siamese_cd.data.readers.decoding",
    "naming_undecodable": "siamese_cd.data.readers.undecodable",
    "pixel_scale": "siamese_cd.data.readers.decoding",
    "read_grid": "siamese_cd.data.readers.georeference",
    "read_image": "siamese_cd.data.readers.decoding",
    "read_label": "siamese_cd.data.readers.decoding",
    "read_label_values": "siamese_cd.data.readers.decoding",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
