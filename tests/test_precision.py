"""`--precision`: what "auto" picks on which hardware, and float32 where quality needs it."""

import keras
import numpy as np
import pytest

from siamese_cd import SiameseChangeModel, WeightedBinaryCrossentropy
from siamese_cd.errors import ConfigError
from siamese_cd.training import precision


@pytest.mark.parametrize(
    ("flags", "gpus", "expected"),
    [
        ({"avx2", "avx512f"}, [], "float32"),  # Zen 3, Skylake: no bfloat16 instructions
        ({"avx2", "avx512f", "avx512_bf16"}, [], "bfloat16"),  # Zen 4, Cooper Lake
        ({"avx2", "amx_bf16", "amx_tile"}, [], "bfloat16"),  # Sapphire Rapids
        ({"avx2"}, [(8, 0)], "bfloat16"),  # A100
        ({"avx2"}, [(9, 0), (8, 6)], "bfloat16"),  # H100 with an RTX 30
        ({"avx2"}, [(7, 0)], "float16"),  # V100
        ({"avx512_bf16"}, [(7, 5)], "float16"),  # T4: the GPU trains, not the CPU
        ({"avx2"}, [(8, 0), (6, 1)], "float32"),  # the oldest GPU decides: a P40 has no TCs
        (set(), [], "float32"),
    ],
)
def test_auto_chooses_by_hardware(flags, gpus, expected):
    chosen, reason = precision.choose_precision(cpu_flags=flags, gpu_capabilities=gpus)
    assert chosen == expected and reason


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16\n\nflags : other\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()


def test_set_precision_says_what_it_chose_and_why(monkeypatch, capsys):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(precision, "_gpu_capabilities", list)
    try:
        assert precision.set_precision("auto") == "bfloat16"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert "Precision: bfloat16 (the CPU has AVX512_BF16" in capsys.readouterr().out
        assert precision.set_precision("float16", verbose=False) == "float16"
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        with pytest.raises(ConfigError, match="precision must be one of"):
            precision.set_precision("int8")
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_bfloat16_keeps_outputs_loss_and_metrics_float32_and_moves_every_kernel():
    rng = np.random.default_rng(0)
    x = tuple(rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    y = (rng.random((4, 16, 16, 1)) > 0.8).astype(np.float32)
    policy = precision.dtype_policy("bfloat16")
    model = SiameseChangeModel(depth=2, filters=4, dropout=0.0, preprocessing="unit", dtype=policy)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=WeightedBinaryCrossentropy(3.0))
    assert keras.mixed_precision.global_policy().name == "float32"  # only this model changed
    encoder = model.backbone.get_layer("encoder")
    assert encoder.get_layer("enc1_1_conv").compute_dtype == "bfloat16"
    assert model.preprocessor.compute_dtype == "float32"
    assert model.backbone.get_layer("head").compute_dtype == "float32"
    before = [np.asarray(w) for w in model.trainable_weights]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.asarray(model(x)).dtype == np.float32
    assert model.loss_tracker.result().dtype == "float32"
    assert all(np.isfinite(v) for v in logs.values())
    assert model.change_metrics.result()["f1"].dtype == "float32"
    for variable, old in zip(model.trainable_weights, before):
        if variable.path.endswith("kernel"):
            assert np.abs(np.asarray(variable) - old).max() > 0, variable.path


def test_dtype_policy_resolves_auto_and_leaves_the_global_policy(monkeypatch, capsys):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(precision, "_gpu_capabilities", list)
    assert precision.dtype_policy("auto", verbose=True).name == "mixed_bfloat16"
    assert "Precision: bfloat16 (the CPU has AVX512_BF16" in capsys.readouterr().out
    assert precision.dtype_policy("float16").name == "mixed_float16"
    assert precision.dtype_policy("float32").name == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        precision.dtype_policy("int8")


@pytest.mark.parametrize("alignment", ["keras", "torch"])
@pytest.mark.parametrize("variant", ["diff", "conc", "ef"])
def test_a_model_of_its_own_policy_computes_as_under_the_global_policy(variant, alignment):
    """``dtype=`` gives every computing layer the policy the global one used to give it."""

    def policies(model):
        return [
            (layer.name, layer.dtype_policy.name)
            for layer in model._flatten_layers(include_self=False, recursive=True)
            if not isinstance(layer, keras.layers.InputLayer)  # computes nothing
        ]

    config = {"variant": variant, "depth": 2, "filters": 2, "alignment": alignment,
              "preprocessing": "unit"}  # fmt: skip
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        under_global = SiameseChangeModel(**config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    own = SiameseChangeModel(**config, dtype=precision.dtype_policy("bfloat16"))
    assert policies(own) == policies(under_global)
    assert own.dtype_policy.name == under_global.dtype_policy.name == "mixed_bfloat16"
    own.set_weights(under_global.get_weights())
    pixels = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(own((pixels, pixels)), under_global((pixels, pixels)))
