import keras
import numpy as np
import pytest

from siamese_cd.errors import ConfigError
from siamese_cd.models.losses import WeightedBinaryCrossentropy
from siamese_cd.models.siamese import SiameseChangeModel
from tests.testing import TestCase


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# Published PyTorch counts (Daudt et al. 2018 code), RGB, depth 4, filters 16, 2-class head.
PUBLISHED = {"ef": 1_350_578, "diff": 1_350_146, "conc": 1_545_986}


def randomize(model, seed=0):
    """Random weights everywhere, with positive BatchNorm variances, so a round trip that
    dropped or shuffled any variable would change the predictions."""
    rng = np.random.default_rng(seed)
    for v in model.backbone.weights:
        v.assign(
            rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path else rng.normal(0, 0.3, v.shape)
        )


class TestSiameseChangeModel(TestCase):
    @pytest.mark.parametrize("variant", sorted(PUBLISHED))
    def test_parameter_count_matches_published(self, variant):
        assert trainable_count(SiameseChangeModel(variant=variant)) == PUBLISHED[variant]
        # A 1-channel sigmoid head drops 16 * 9 + 1 = 145 weights.
        sigmoid = SiameseChangeModel(variant=variant, num_classes=1)
        assert trainable_count(sigmoid) == PUBLISHED[variant] - 145

    def test_siamese_branches_share_one_encoder(self):
        model = SiameseChangeModel(variant="diff", depth=2, filters=4)
        encoders = [layer for layer in model.backbone.layers if layer.name == "encoder"]
        assert len(encoders) == 1
        assert len(encoders[0]._inbound_nodes) == 2  # called on t1 and on t2

    @pytest.mark.parametrize("size", [(32, 32), (50, 37), (7, 9)])
    def test_any_input_size_is_padded_and_cropped_back(self, size):
        model = SiameseChangeModel(
            depth=3, filters=4, preprocessing="unit", alignment="keras", num_classes=1
        )
        x = np.random.default_rng(0).random((2, *size, 3), dtype=np.float32)
        out = model.predict((x, x), verbose=0)
        assert out.shape == (2, *size, 1)
        assert ((out >= 0) & (out <= 1)).all()

    def test_the_published_grid_takes_any_size_from_two_to_the_depth(self):
        model = SiameseChangeModel(depth=3, filters=4)
        x = np.random.default_rng(0).random((2, 9, 13, 3), dtype=np.float32)
        out = model.predict((x, x), verbose=0)
        assert out.shape == (2, 9, 13, 2)
        np.testing.assert_allclose(out.sum(-1), 1, rtol=1e-6)
        small = x[:, :7]
        with pytest.raises(ConfigError, match=r"7x13 pixels is smaller than the 8 pixels"):
            model((small, small))

    @pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
    def test_integer_pixels_are_scaled_by_their_type_maximum(self, dtype, tmp_path):
        """Integer batches (PairedImageDataset's) give what the scaled floats give."""
        model = SiameseChangeModel(depth=2, filters=4, preprocessing="unit")
        rng = np.random.default_rng(0)
        maximum = np.iinfo(dtype).max
        t1, t2 = (rng.integers(0, maximum + 1, (2, 12, 12, 3)).astype(dtype) for _ in range(2))
        floats = model.predict((t1 / np.float32(maximum), t2 / np.float32(maximum)), verbose=0)
        np.testing.assert_allclose(model.predict((t1, t2), verbose=0), floats, atol=1e-6)
        np.testing.assert_allclose(np.asarray(model((t1, t2))), floats, atol=1e-6)
        # Unscaled, the same pixels as float32 0..max give another answer: scaling matters.
        unscaled = model.predict((t1.astype(np.float32), t2.astype(np.float32)), verbose=0)
        assert np.abs(unscaled - floats).max() > 1e-3
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        np.testing.assert_allclose(loaded.predict((t1, t2), verbose=0), floats, atol=1e-6)

    def test_signed_integer_pixels_are_refused(self):
        model = SiameseChangeModel(depth=2, filters=4, preprocessing="unit")
        x = np.zeros((1, 8, 8, 3), np.int32)
        with pytest.raises(ConfigError, match="uint8 or uint16, got int32"):
            model((x, x))

    def test_two_class_head_is_softmax(self):
        model = SiameseChangeModel(depth=2, filters=4, num_classes=2, preprocessing="unit")
        x = np.random.default_rng(0).random((1, 8, 8, 3), dtype=np.float32)
        out = model.predict((x, x), verbose=0)
        np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)

    def test_filters_list_and_convs(self):
        model = SiameseChangeModel(depth=3, filters=[4, 6, 10], convs_per_level=2)
        assert model.widths == [4, 6, 10]
        encoder = model.backbone.get_layer("encoder")
        assert encoder.get_layer("enc3_2_conv").filters == 10
        with pytest.raises(ValueError):
            encoder.get_layer("enc3_3_conv")

    def test_default_convs_follow_paper(self):
        model = SiameseChangeModel(depth=5, filters=2)
        encoder = model.backbone.get_layer("encoder")
        names = {layer.name for layer in encoder.layers}
        assert {"enc1_2_conv", "enc2_2_conv", "enc5_3_conv"} <= names
        assert "enc1_3_conv" not in names and "enc2_3_conv" not in names

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"variant": "siam"}, "variant"),
            ({"depth": 1}, "depth"),
            ({"depth": 7}, "depth"),
            ({"filters": [4, 8]}, "2 widths for depth 4"),
            ({"num_classes": 3}, "num_classes"),
            ({"convs_per_level": [1, 2, 2, 2]}, "level 1"),
            ({"dropout": 1.0}, "dropout"),
        ],
    )
    def test_bad_configs(self, kwargs, match):
        with pytest.raises(ConfigError, match=match):
            SiameseChangeModel(**kwargs)

    @pytest.mark.parametrize("variant", ["diff", "conc", "ef"])
    def test_config_round_trip(self, variant):
        model = SiameseChangeModel(variant=variant, depth=2, filters=[3, 5], in_channels=4)
        revived = self.run_serialization_test(model)
        assert trainable_count(revived) == trainable_count(model)

    @pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
    @pytest.mark.parametrize("variant", ["diff", "conc", "ef"])
    def test_keras_round_trip_for_every_variant_and_depth(self, variant, depth, tmp_path):
        model = SiameseChangeModel(variant=variant, depth=depth, filters=2, preprocessing="unit")
        randomize(model)
        side = max(40, 2**depth)
        rng = np.random.default_rng(1)
        x = (
            rng.random((1, side, side, 3), dtype=np.float32),
            rng.random((1, side, side, 3), dtype=np.float32),
        )
        self.run_model_saving_test(model, x, tmp_path)

    @pytest.mark.parametrize("variant", ["diff", "conc", "ef"])
    def test_trained_and_compiled_model_round_trip(self, variant, tmp_path):
        model = SiameseChangeModel(
            variant=variant, depth=2, filters=4, in_channels=2, preprocessing="unit"
        )
        model.compile(optimizer="adam", loss=WeightedBinaryCrossentropy(pos_weight=3.0))
        rng = np.random.default_rng(1)
        x = (
            rng.random((2, 16, 16, 2), dtype=np.float32),
            rng.random((2, 16, 16, 2), dtype=np.float32),
        )
        y = (rng.random((2, 16, 16, 1)) > 0.7).astype(np.float32)
        model.fit(x, y, epochs=1, verbose=0)  # move BatchNorm statistics off their initial values
        loaded = self.run_model_saving_test(model, x, tmp_path)
        assert loaded.built
        assert loaded.loss.pos_weight == 3.0
        assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))

    def test_fit_reports_epoch_metrics_and_auto_weight(self):
        rng = np.random.default_rng(0)
        x = rng.random((4, 16, 16, 3), dtype=np.float32)
        y = np.zeros((4, 16, 16, 1), np.float32)
        y[:, :4, :4] = 1  # change fraction 1/16
        model = SiameseChangeModel(depth=2, filters=4)
        model.compile(optimizer="adam")
        history = model.fit((x, x), y, validation_data=((x, x), y), epochs=1, verbose=0)
        assert model.loss.pos_weight == pytest.approx(15.0)
        for name in ("loss", "precision", "recall", "f1", "iou", "val_f1", "val_iou"):
            assert name in history.history


class TestPrecisionPerModel(TestCase):
    """``dtype=`` gives one model its precision; the global policy and saved files stay float32."""

    @pytest.mark.parametrize(
        ("variant", "alignment", "float32_layers"),
        [
            ("diff", "keras", ("preprocessor", "head", "crop", "probability")),
            ("conc", "torch", ("preprocessor", "head", "probability")),  # no crop on torch's grid
            ("ef", "keras", ("preprocessor", "head", "crop", "probability")),
        ],
    )
    def test_mixed_policies_reach_every_layer_but_the_float32_ones(
        self, variant, alignment, float32_layers
    ):
        pixels = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
        self.run_precision_test(
            SiameseChangeModel,
            {"variant": variant, "depth": 2, "filters": 2, "alignment": alignment,
             "preprocessing": "unit"},
            (pixels, pixels),
            float32_layers=float32_layers,
        )  # fmt: skip

    def test_without_dtype_every_layer_is_float32(self):
        model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
        assert {layer.compute_dtype for layer in model._flatten_layers()} == {"float32"}
        model.compile()
        assert type(model.optimizer).__name__ != "LossScaleOptimizer"

    def test_mixed_float16_scales_the_loss_of_that_model_only(self):
        model = SiameseChangeModel(depth=2, filters=2, dtype="mixed_float16")
        model.compile()
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
        other = SiameseChangeModel(depth=2, filters=2)
        other.compile()
        assert type(other.optimizer).__name__ != "LossScaleOptimizer"

    def test_the_precision_is_not_saved_so_the_loader_chooses_it(self, tmp_path):
        pixels = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
        model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit", dtype="mixed_bfloat16")
        assert "dtype" not in model.get_config()
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        assert loaded.dtype_policy.name == "float32"
        encoder = loaded.backbone.get_layer("encoder")
        assert encoder.get_layer("enc1_1_conv").compute_dtype == "float32"
        np.testing.assert_allclose(
            loaded.predict((pixels, pixels), verbose=0),
            model.predict((pixels, pixels), verbose=0),
            atol=0.02,  # bfloat16 against float32 on the same weights
        )
        # A config with a policy (given to from_config) builds the model in it.
        again = SiameseChangeModel.from_config({**model.get_config(), "dtype": "mixed_bfloat16"})
        assert again.backbone.get_layer("encoder").compute_dtype == "bfloat16"


@keras.saving.register_keras_serializable(package="siamese_cd_tests")
class TinyBackbone(keras.Model):
    """Another encoder: one convolution over the stacked dates, to show any backbone fits."""

    def __init__(self, in_channels=3, num_classes=1, **kwargs):
        t1 = keras.Input((None, None, in_channels))
        t2 = keras.Input((None, None, in_channels))
        stacked = keras.layers.Concatenate()([t1, t2])
        logits = keras.layers.Conv2D(num_classes, 3, padding="same", name="conv")(stacked)
        super().__init__(inputs=(t1, t2), outputs=logits, **kwargs)
        self.in_channels = in_channels
        self.num_classes = num_classes

    def get_config(self):
        return {"name": self.name, "in_channels": self.in_channels, "num_classes": self.num_classes}


class TestBackboneObject(TestCase):
    def test_the_keyword_form_builds_the_backbone_the_object_form_takes(self):
        from siamese_cd.models.backbone import FCSiamBackbone
        from siamese_cd.models.preprocessing import ChangePreprocessor

        keywords = SiameseChangeModel(
            variant="conc", depth=3, filters=[2, 4, 6], in_channels=4, preprocessing="unit"
        )
        backbone = FCSiamBackbone("conc", depth=3, filters=[2, 4, 6], in_channels=4)
        objects = SiameseChangeModel(
            backbone=backbone, preprocessor=ChangePreprocessor("unit", in_channels=4)
        )
        assert objects.backbone is backbone
        assert objects.backbone.get_config() == keywords.backbone.get_config()
        assert trainable_count(objects) == trainable_count(keywords)
        assert (keywords.variant, keywords.widths, keywords.in_channels) == ("conc", [2, 4, 6], 4)

    def test_the_config_holds_the_architecture_once_in_the_backbone(self):
        model = SiameseChangeModel(variant="ef", depth=2, filters=3, threshold=0.3)
        config = model.get_config()
        assert sorted(config) == ["backbone", "name", "preprocessor", "threshold", "trainable"]
        assert config["backbone"]["class_name"] == "FCSiamBackbone"
        assert config["backbone"]["config"]["variant"] == "ef"
        assert config["backbone"]["config"]["filters"] == 3
        assert config["preprocessor"]["class_name"] == "ChangePreprocessor"
        revived = self.run_serialization_test(model)
        assert (revived.variant, revived.depth, revived.threshold) == ("ef", 2, 0.3)

    def test_the_backbone_config_round_trips_and_old_standalone_configs_load(self):
        from siamese_cd.models.backbone import FCSiamBackbone

        backbone = FCSiamBackbone("diff", depth=2, filters=[3, 5], convs_per_level=2)
        self.run_serialization_test(backbone)
        # A backbone saved on its own before named the resolved lists `widths` and `convs`.
        old = {"name": "backbone", "variant": "diff", "depth": 2, "widths": [3, 5],
               "convs": [2, 2], "dropout": 0.2, "batch_norm": True, "in_channels": 3,
               "num_classes": 2, "init": "torch", "alignment": "torch"}  # fmt: skip
        revived = FCSiamBackbone.from_config(old)
        assert (revived.widths, revived.convs) == ([3, 5], [2, 2])
        assert trainable_count(revived) == trainable_count(backbone)

    def test_another_backbone_trains_saves_and_loads(self, tmp_path):
        model = SiameseChangeModel(backbone=TinyBackbone(in_channels=2), preprocessing="unit")
        assert (model.in_channels, model.num_classes) == (2, 1)
        rng = np.random.default_rng(0)
        x = (rng.random((2, 8, 8, 2), dtype=np.float32), rng.random((2, 8, 8, 2), np.float32))
        y = (rng.random((2, 8, 8, 1)) > 0.7).astype(np.float32)
        model.compile()
        model.fit(x, y, epochs=1, verbose=0)
        loaded = self.run_model_saving_test(model, x, tmp_path)
        assert type(loaded.backbone) is TinyBackbone
        with pytest.raises(AttributeError):
            _ = loaded.variant  # an FCSiamBackbone setting this backbone does not have

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"backbone": "diff"}, "got the string 'diff'; to choose the variant write variant="),
            ({"backbone": 3}, "backbone must be a Keras model such as FCSiamBackbone, got int"),
            ({"backbone": "tiny", "depth": 3}, "the backbone given decides depth"),
            ({"backbone": "tiny", "preprocessing": "unit", "preprocessor": "unit"}, "not both"),
            ({"backbone": "tiny", "preprocessor": "unit3"}, "takes 3 band\\(s\\), the backbone"),
            ({"backbone": "bare"}, "has no in_channels and no num_classes attribute"),
            ({"backbone": "three"}, "gives 3 logit channels"),
            ({"preprocessing": "divide"}, "preprocessing must be one of"),
        ],
    )
    def test_bad_parts_are_named(self, kwargs, match):
        from siamese_cd.models.preprocessing import ChangePreprocessor

        parts = {
            "tiny": lambda: TinyBackbone(in_channels=2),
            "three": lambda: TinyBackbone(num_classes=3),
            "bare": lambda: keras.Sequential([keras.layers.Dense(1)]),
        }
        kwargs = dict(kwargs)
        if kwargs.get("backbone") in parts:
            kwargs["backbone"] = parts[kwargs["backbone"]]()
        if kwargs.get("preprocessor") == "unit3":
            kwargs["preprocessor"] = ChangePreprocessor("unit", in_channels=3)
        elif "preprocessor" in kwargs:
            kwargs["preprocessor"] = ChangePreprocessor("unit", in_channels=2)
        with pytest.raises(ConfigError, match=match):
            SiameseChangeModel(**kwargs)
