"""Batches for the model: the Keras dataset, its batches, the tf.data path, cache and sources.

- `siamese_cd.data.pipeline.dataset`: `PairedImageDataset`, a Keras `PyDataset`;
- `siamese_cd.data.pipeline.batches`: how one batch is assembled;
- `siamese_cd.data.pipeline.source`: `SampleSource`, the samples of a split as arrays;
- `siamese_cd.data.pipeline.tf_pipeline`: the same samples as a `tf.data.Dataset`;
- `siamese_cd.data.pipeline.cache`: the decoded cache on disk;
- `siamese_cd.data.pipeline.buffers`: batch arrays reused across batches;
- `siamese_cd.data.pipeline.stats`: the fraction of changed pixels, for class weights.

Names are imported on first use (`siamese_cd.data.lazy`): `PairedImageDataset` brings Keras
in, ``tf_pipeline`` TensorFlow; the others need neither.
"""

from siamese_cd.data.lazy import lazy_exports

_EXPORTS = {
    "BatchBuffers": "siamese_cd.data.pipeline.buffers",
    "DecodedCache": "siamese_cd.data.pipeline.cache",
    "PairedImageDataset": "siamese_cd.data.pipeline.dataset",
    "SampleSource": "siamese_cd.data.pipeline.source",
    "change_fraction": "siamese_cd.data.pipeline.stats",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
