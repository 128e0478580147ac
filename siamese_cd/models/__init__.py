"""The change-detection model: task, backbone, blocks, preprocessing, recipe, losses, metrics.

Also here: the guard against non-finite losses, loading ``.keras`` files and reading the
authors' PyTorch checkpoints.
"""
