"""The registered layouts, one module per benchmark or way of storing a dataset.

Every module here is imported by `siamese_cd.data.layouts.registry.layouts` on the first
look-up and registers its class with `siamese_cd.data.layouts.registry.register`. To add a
benchmark, add a module (its class, the published folder names in the docstring with their
source) and a test that writes a small tree with those names.
"""
