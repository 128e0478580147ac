import numpy as np
import pytest

from siamese_cd import SiameseChangeModel
from siamese_cd.errors import ConfigError, ImageReadError
from siamese_cd.inference import predict_scene, ramp, window_starts


def random_model(depth=2, seed=0):
    model = SiameseChangeModel(depth=depth, filters=4)
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(
            rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path else rng.normal(0, 0.3, v.shape)
        )
    return model


def whole_image(model, t1, t2):
    return model.predict_on_batch((t1[None], t2[None]))[0, ..., 0]


def test_window_starts_cover_the_scene_and_end_flush():
    assert window_starts(100, 64, 32) == [0, 32, 36]
    assert window_starts(64, 64, 32) == [0]
    assert window_starts(40, 64, 32) == [0]
    assert window_starts(1000, 256, 192) == [0, 192, 384, 576, 744]


def test_ramp_is_zero_near_shared_edges_and_one_at_scene_edges():
    weights = ramp(16, 8, fade_start=True, fade_end=False)
    assert (weights[:2] == 0).all() and (weights[6:] == 1).all()
    assert np.all(np.diff(weights) >= 0)
    assert (ramp(16, 8, fade_start=False, fade_end=False) == 1).all()
    np.testing.assert_array_equal(ramp(16, 8, True, True), ramp(16, 8, True, True)[::-1])


def test_tiled_prediction_equals_whole_image_prediction():
    model = random_model(depth=2)
    rng = np.random.default_rng(1)
    t1 = rng.random((192, 160, 3), np.float32)
    t2 = rng.random((192, 160, 3), np.float32)
    # Stride 32 keeps the pooling grid; a quarter of the overlap outruns border effects.
    tiled = predict_scene(model, t1, t2, tile_size=96, overlap=64, batch_size=3)
    np.testing.assert_allclose(tiled, whole_image(model, t1, t2), atol=1e-5)


def test_no_seam_along_tile_borders_on_a_smooth_input():
    model = random_model(depth=2)
    t1 = np.full((256, 256, 3), 0.3, np.float32)
    t2 = np.full((256, 256, 3), 0.6, np.float32)
    inner = (slice(48, 208), slice(48, 208))  # away from the scene's own borders

    def largest_step(probability):
        p = probability[inner]
        return max(np.abs(np.diff(p, axis=0)).max(), np.abs(np.diff(p, axis=1)).max())

    own_texture = largest_step(whole_image(model, t1, t2))
    blended = predict_scene(model, t1, t2, tile_size=64, overlap=32)
    assert largest_step(blended) <= own_texture + 1e-3
    # Butted tiles (no overlap) do show seams, so the check above can fail.
    butted = predict_scene(model, t1, t2, tile_size=64, overlap=0)
    assert largest_step(butted) > 5 * own_texture


def test_odd_scene_size():
    model = random_model(depth=2)
    rng = np.random.default_rng(2)
    t1 = rng.integers(0, 256, (1000, 777, 3), dtype=np.uint8)  # integers are scaled to [0, 1]
    t2 = rng.integers(0, 256, (1000, 777, 3), dtype=np.uint8)
    probability = predict_scene(model, t1, t2, tile_size=256, overlap=64, batch_size=4)
    assert probability.shape == (1000, 777) and probability.dtype == np.float32
    assert np.isfinite(probability).all() and (probability >= 0).all() and (probability <= 1).all()
    corner = model.predict_on_batch((t1[None, :256, :256] / 255, t2[None, :256, :256] / 255))
    np.testing.assert_allclose(probability[:40, :40], corner[0, :40, :40, 0], atol=1e-5)


def test_scene_smaller_than_a_tile():
    model = random_model(depth=2)
    t = np.random.default_rng(3).random((30, 50, 3), np.float32)
    np.testing.assert_allclose(
        predict_scene(model, t, t, tile_size=64, overlap=16), whole_image(model, t, t), atol=1e-6
    )


def test_errors():
    model = random_model(depth=2)
    t = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ImageReadError, match=r"\(32, 32, 3\).*\(32, 40, 3\)"):
        predict_scene(model, t, np.zeros((32, 40, 3), np.float32))
    with pytest.raises(ConfigError, match="overlap < tile_size"):
        predict_scene(model, t, t, tile_size=32, overlap=32)
