"""Using a trained model: scores on a split, change maps of any size, TTA, the decision threshold,
and exporting it as a SavedModel, ONNX or LiteRT file run by those formats' own runtimes.

Loading a ``.keras`` file is `siamese_cd.models.loading`; ``siamese-cd evaluate`` and
``siamese-cd predict`` call these modules.
"""
