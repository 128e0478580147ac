"""Where a dataset's files are: the layout registry, pairing by name, scene readers, splits.

- `siamese_cd.data.layouts.registry`: the registry: `Layout`, `FolderLayout`, `register`,
  detection (`dataset_layout`, `folder_layout`) and the layouts' descriptions;
- `siamese_cd.data.layouts.catalog`: the registered layouts, one module per benchmark
  (LEVIR-CD, LEVIR-CD+, S2Looking, WHU-CD, CDD, SECOND, SYSU-CD, OSCD, AirChange, scene folders);
- `siamese_cd.data.layouts.pairing`: matching files by stem, CSV of triples;
- `siamese_cd.data.layouts.opening`: a path to its `SampleSource`, whatever it holds;
- `siamese_cd.data.layouts.scenes`, `siamese_cd.data.layouts.oscd`,
  `siamese_cd.data.layouts.airchange`, `siamese_cd.data.layouts.scene_layouts`: the readers of
  datasets stored scene by scene;
- `siamese_cd.data.layouts.splits`: the train, validation and test splits of a run.

Names are imported on first use (`siamese_cd.data.lazy`): `training_splits` and `open_split`
bring Keras in, the rest does not.
"""

from siamese_cd.data.lazy import lazy_exports

_EXPORTS = {
    "DatasetSplits": "siamese_cd.data.layouts.splits",
    "FolderLayout": "siamese_cd.data.layouts.registry",
    "Layout": "siamese_cd.data.layouts.registry",
    "Pair": "siamese_cd.data.layouts.pairing",
    "PairList": "siamese_cd.data.layouts.pairing",
    "SceneLayout": "siamese_cd.data.layouts.registry",
    "dataset_layout": "siamese_cd.data.layouts.registry",
    "detect_layout": "siamese_cd.data.layouts.registry",
    "folder_layout": "siamese_cd.data.layouts.registry",
    "layouts": "siamese_cd.data.layouts.registry",
    "open_source": "siamese_cd.data.layouts.opening",
    "open_split": "siamese_cd.data.layouts.splits",
    "pair_by_stem": "siamese_cd.data.layouts.pairing",
    "pair_split": "siamese_cd.data.layouts.registry",
    "pairs_from_csv": "siamese_cd.data.layouts.pairing",
    "register": "siamese_cd.data.layouts.registry",
    "training_splits": "siamese_cd.data.layouts.splits",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
