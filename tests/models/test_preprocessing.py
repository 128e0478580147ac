"""`ChangePreprocessor`: the one place pixels are scaled, measured once, saved with the model."""

import keras
import numpy as np
import pytest

from siamese_cd import PairedImageDataset, SiameseChangeModel
from siamese_cd.errors import ConfigError, DatasetError
from siamese_cd.models.preprocessing import ChangePreprocessor, preprocessing_config
from tests.fakes import make_split
from tests.testing import TestCase


def dataset_pixels(dataset):
    """Every pixel of both dates as (N, bands) float64, read independently of the layer."""
    images = []
    for i in range(len(dataset.pairs)):
        t1, t2, _ = dataset.read_pair(i)
        images += [t1.reshape(-1, t1.shape[-1]), t2.reshape(-1, t2.shape[-1])]
    return np.concatenate(images).astype(np.float64)


class TestChangePreprocessor(TestCase):
    @pytest.mark.parametrize(
        ("dtype", "maximum"), [(np.uint8, 255.0), (np.uint16, 65535.0), (np.float32, 1.0)]
    )
    def test_unit_divides_by_the_pixel_type_maximum(self, dtype, maximum):
        pixels = np.array([[[[0, 1, 7]]]]).astype(dtype)
        expected = pixels.astype(np.float32) / np.float32(maximum)
        self.run_layer_test(ChangePreprocessor("unit"), pixels, expected)

    def test_standardize_measures_every_pixel_of_both_dates(self, tmp_path):
        dataset = PairedImageDataset(make_split(tmp_path / "train", count=5))
        layer = ChangePreprocessor("standardize")
        layer.adapt(dataset, progress=False)
        pixels = dataset_pixels(dataset)
        np.testing.assert_allclose(layer.mean, pixels.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(layer.variance, pixels.var(axis=0), rtol=1e-4)
        t1, _, _ = dataset.read_pair(0)
        expected = (t1 - pixels.mean(axis=0)) / pixels.std(axis=0)
        self.run_layer_test(layer, t1[None], expected[None], atol=1e-4)
        assert layer.pixel_dtype == "uint8"

    @pytest.mark.parametrize(("dtype", "scaling"), [(np.uint8, "unit"), (np.uint16, "standardize")])
    def test_auto_chooses_from_the_training_pixels(self, dtype, scaling):
        layer = ChangePreprocessor("auto")
        assert layer.pending
        pixels = np.random.default_rng(0).integers(1000, 2000, (2, 4, 4, 3)).astype(dtype)
        layer.adapt(pixels)
        assert layer.scaling == scaling and not layer.pending
        assert layer.pixel_dtype == np.dtype(dtype).name

    def test_constant_band_is_refused_by_name(self):
        pixels = np.random.default_rng(0).integers(0, 9, (2, 4, 4, 3)).astype(np.uint16)
        pixels[..., 1] = 1500
        with pytest.raises(DatasetError, match=r"band\(s\) \[2\] are constant"):
            ChangePreprocessor("standardize").adapt(pixels)

    def test_unmeasured_model_refuses_to_predict(self):
        model = SiameseChangeModel(depth=2, filters=2, preprocessing="auto")
        x = np.zeros((1, 8, 8, 3), np.uint16)
        with pytest.raises(ConfigError, match="has not seen training data yet"):
            model.predict((x, x), verbose=0)
        with pytest.raises(ConfigError, match="preprocessing must be one of"):
            SiameseChangeModel(depth=2, filters=2, preprocessing="minmax")

    def test_measured_config_builds_a_ready_model(self, tmp_path):
        pixels = np.random.default_rng(0).integers(1000, 3000, (2, 8, 8, 4)).astype(np.uint16)
        config = preprocessing_config((pixels, pixels), "auto")
        assert config["scaling"] == "standardize" and len(config["mean"]) == 4
        model = SiameseChangeModel(depth=2, filters=2, in_channels=4, preprocessing=config)
        assert not model.preprocessor.pending
        np.testing.assert_allclose(model.preprocessor.mean, config["mean"])
        revived = self.run_serialization_test(model.preprocessor)
        np.testing.assert_allclose(revived.variance, config["variance"])
        self.run_model_saving_test(model, (pixels, pixels), tmp_path)
        with pytest.raises(ConfigError, match="measured on 4 band"):
            SiameseChangeModel(depth=2, filters=2, in_channels=3, preprocessing=config)

    def test_stays_float32_under_mixed_precision(self):
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            layer = ChangePreprocessor("standardize", in_channels=1, mean=[1500.0], variance=[4.0])
            out = layer(np.array([[[[1502]]]], np.uint16))
        finally:
            keras.mixed_precision.set_global_policy("float32")
        assert layer.compute_dtype == "float32" and out.dtype == "float32"
        assert float(np.asarray(out).ravel()[0]) == 1.0


class TestPerImageStandardisation(TestCase):
    def test_per_image_uses_one_mean_and_std_over_all_bands_as_the_notebook(self):
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 4000, (3, 5, 7, 13)).astype(np.uint16)
        # The notebook: I = (I - I.mean()) / I.std() on each image, in float64.
        flat = pixels.astype(np.float64).reshape(3, -1)
        expected = (flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)
        layer = ChangePreprocessor("per_image", in_channels=13)
        assert not layer.pending
        self.run_layer_test(layer, pixels, expected.reshape(pixels.shape), atol=1e-5)

    def test_per_image_band_standardises_each_band_of_each_image(self):
        pixels = np.array([[[[1.0, 10.0], [3.0, 30.0]]], [[[5.0, 0.0], [5.0, 2.0]]]])  # (2,1,2,2)
        out = ChangePreprocessor("per_image_band", in_channels=2)(pixels.astype(np.float32))
        expected = [[[[-1, -1], [1, 1]]], [[[0, -1], [0, 1]]]]  # a constant band becomes 0
        np.testing.assert_allclose(np.asarray(out), expected, atol=1e-6)

    def test_constant_image_gives_zeros_not_nan_and_the_pixel_type_does_not_matter(self):
        layer = ChangePreprocessor("per_image", in_channels=3)
        constant = np.full((1, 4, 4, 3), 1500, np.uint16)
        np.testing.assert_array_equal(np.asarray(layer(constant)), 0.0)
        image = np.random.default_rng(1).integers(0, 256, (1, 6, 6, 3)).astype(np.uint8)
        as_uint8 = np.asarray(layer(image))
        np.testing.assert_allclose(
            np.asarray(layer(image.astype(np.float32) / 255)), as_uint8, atol=1e-5
        )
        np.testing.assert_allclose(
            np.asarray(layer(image.astype(np.uint16) * 257)), as_uint8, atol=1e-5
        )

    def test_model_with_per_image_preprocessing_needs_no_adapt_and_saves(self, tmp_path):
        model = SiameseChangeModel(depth=2, filters=2, preprocessing="per_image")
        pixels = np.random.default_rng(2).integers(0, 3000, (2, 8, 8, 3)).astype(np.uint16)
        assert model.preprocessor.scaling == "per_image"
        self.run_model_saving_test(model, (pixels, pixels), tmp_path)
