"""The recipes' names and what each one's model is built with, without Keras.

`siamese_cd.models.recipe` builds each recipe's optimizer and loss; the command line and
`siamese_cd.training.settings.TrainSettings` check names here, so that ``siamese-cd --help``
and usage errors never import TensorFlow.

Example:
    >>> model_recipe(num_classes=2, alignment="torch"), model_recipe(1, "keras")
    ('paper', 'sigmoid')
    >>> RECIPE_MODELS[DEFAULT_RECIPE]["preprocessing"]
    'per_image'
"""

from __future__ import annotations

from siamese_cd.errors import ConfigError

RECIPES = ("paper", "sigmoid")
#: The recipe `siamese-cd train`, `reproduce` and `TrainSettings` use unless told otherwise:
#: the recipe ablation found no departure from the published training that clears it.
DEFAULT_RECIPE = "paper"
#: What a model trained by each recipe is built with, besides the architecture
#: (`SiameseChangeModel`'s own defaults are ``"paper"``'s).
RECIPE_MODELS = {
    "paper": {"num_classes": 2, "alignment": "torch", "preprocessing": "per_image"},
    "sigmoid": {"num_classes": 1, "alignment": "keras", "preprocessing": "auto"},
}


def model_recipe(num_classes: int, alignment: str) -> str:
    """The recipe a model trains with by default: ``"paper"`` for the published 2-class head
    on PyTorch's pixel grid, ``"sigmoid"`` for any other model."""
    return "paper" if num_classes == 2 and alignment == "torch" else "sigmoid"


def check_recipe(recipe: str, allow_auto: bool = True) -> None:
    """Raise a `ConfigError` unless `recipe` is one of `RECIPES` (or ``"auto"``)."""
    if recipe in RECIPES or (allow_auto and recipe == "auto"):
        return
    choices = ("auto", *RECIPES) if allow_auto else RECIPES
    renamed = " (the recipe once named 'default' is 'sigmoid')" if recipe == "default" else ""
    raise ConfigError(f"recipe must be one of {choices}, got {recipe!r}{renamed}")
