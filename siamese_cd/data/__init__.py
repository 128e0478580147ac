"""From files on disk to batches for the model: the data side of siamese_cd.

Sub-packages, by job:

- `siamese_cd.data.readers`: decoding image files into arrays (PNG, JPEG, BMP, GeoTIFF),
  pixel checks, georeferencing, naming files TensorFlow cannot decode;
- `siamese_cd.data.layouts`: where a dataset's files are: the layout registry (one class per
  benchmark: LEVIR-CD, LEVIR-CD+, S2Looking, WHU-CD, CDD, SECOND, SYSU-CD, OSCD, AirChange,
  ...), pairing files by name, scene readers and the splits of a run;
- `siamese_cd.data.sampling`: what the model sees of a scene: windows, tiles, random crops
  and augmentation;
- `siamese_cd.data.pipeline`: batches: `PairedImageDataset` (a Keras `PyDataset`), its
  tf.data path, the decoded cache, sample sources and class statistics;
- `siamese_cd.data.synthetic`: a synthetic change-detection dataset, rendered and written;
- `siamese_cd.data.check`: ``siamese-cd check``, a scan of every file of a dataset.

The names below are exported here and imported on first use (`siamese_cd.data.lazy`), so
importing this package costs nothing until a name is used.

Example:
    >>> import siamese_cd.data as data
    >>> data.PairedImageDataset.__module__
    'siamese_cd.data.pipeline.dataset'
"""

from siamese_cd.data.lazy import lazy_exports

# Public name -> module that defines it.
_EXPORTS = {
    "Augment": "siamese_cd.data.sampling.augment",
    "DatasetSplits": "siamese_cd.data.layouts.splits",
    "FolderLayout": "siamese_cd.data.layouts.registry",
    "Layout": "siamese_cd.data.layouts.registry",
    "PairedImageDataset": "siamese_cd.data.pipeline.dataset",
    "SampleSource": "siamese_cd.data.pipeline.source",
    "change_fraction": "siamese_cd.data.pipeline.stats",
    "check_dataset": "siamese_cd.data.check",
    "dataset_layout": "siamese_cd.data.layouts.registry",
    "folder_layout": "siamese_cd.data.layouts.registry",
    "make_synthetic_dataset": "siamese_cd.data.synthetic.generate",
    "open_split": "siamese_cd.data.layouts.splits",
    "pair_by_stem": "siamese_cd.data.layouts.pairing",
    "pairs_from_csv": "siamese_cd.data.layouts.pairing",
    "read_image": "siamese_cd.data.readers.decoding",
    "read_label": "siamese_cd.data.readers.decoding",
    "register": "siamese_cd.data.layouts.registry",
    "training_splits": "siamese_cd.data.layouts.splits",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
