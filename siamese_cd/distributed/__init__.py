"""Training under `tf.distribute`: the strategy, data sharding, the epoch loop, multi-worker runs.

A run on one device needs none of it; `siamese_cd.training` calls in here for ``--distribute``.
"""
