"""Training a model on a dataset folder: the run's settings, the one pipeline every run uses.

Around it: the log folder a run owns, resuming from its backup, numeric precision, the paper's
reproduction and the panels the image callback draws. Runs on several devices or machines are
in `siamese_cd.distributed`; the callbacks themselves in `siamese_cd.callbacks`.
"""
