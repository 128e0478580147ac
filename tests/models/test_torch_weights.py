"""Checkpoints of the authors' PyTorch code load into the Keras model, without PyTorch.

The state_dicts here are NumPy fakes written from the published networks' code (names and
shapes of ``SiamUnet_diff``, ``SiamUnet_conc`` and ``Unet``), independently of the
converter. The numeric parity with real PyTorch networks is `benchmarks/reference_parity.py`.
"""

import sys

import keras
import numpy as np
import pytest

from siamese_cd.cli import main
from siamese_cd.errors import CheckpointError, ConfigError
from siamese_cd.models.blocks import TorchBatchNormalization, TorchUpsampleAlign
from siamese_cd.models.siamese import SiameseChangeModel
from siamese_cd.models.torch_weights import load_state_dict, to_state_dict, torch_slots
from tests.testing import TestCase

PUBLISHED_WIDTHS = (16, 32, 64, 128)
SMALL_WIDTHS = (2, 4, 8, 16)
# Published trainable parameter counts, RGB, 2 classes (the authors' networks).
PUBLISHED_COUNTS = {"ef": 1_350_578, "diff": 1_350_146, "conc": 1_545_986}


def published_state_dict(variant: str, bands: int = 3, widths=PUBLISHED_WIDTHS, seed: int = 0):
    """NumPy arrays under the names and shapes of the authors' ``net.state_dict()``."""
    w1, w2, w3, w4 = widths
    first = 2 * bands if variant == "ef" else bands
    s = 2 if variant == "conc" else 1  # skips concatenated per decoder level
    convs = [  # Conv2d(in, out): weight (out, in, 3, 3)
        ("conv11", first, w1), ("conv12", w1, w1), ("conv21", w1, w2), ("conv22", w2, w2),
        ("conv31", w2, w3), ("conv32", w3, w3), ("conv33", w3, w3),
        ("conv41", w3, w4), ("conv42", w4, w4), ("conv43", w4, w4),
    ]  # fmt: skip
    transposed = [  # ConvTranspose2d(in, out): weight (in, out, 3, 3)
        ("upconv4", w4, w4), ("conv43d", w4 + s * w4, w4), ("conv42d", w4, w4),
        ("conv41d", w4, w3), ("upconv3", w3, w3), ("conv33d", w3 + s * w3, w3),
        ("conv32d", w3, w3), ("conv31d", w3, w2), ("upconv2", w2, w2),
        ("conv22d", w2 + s * w2, w2), ("conv21d", w2, w1), ("upconv1", w1, w1),
        ("conv12d", w1 + s * w1, w1), ("conv11d", w1, 2),
    ]  # fmt: skip
    rng = np.random.default_rng(seed)
    state = {}
    for name, cin, cout in convs + transposed:
        shape = (cout, cin, 3, 3) if (name, cin, cout) in convs else (cin, cout, 3, 3)
        state[f"{name}.weight"] = rng.normal(0, 0.2, shape).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(0, 0.2, cout).astype(np.float32)
        if name.startswith("conv") and name != "conv11d":
            bn = "bn" + name[4:]
            state[f"{bn}.weight"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
            state[f"{bn}.bias"] = rng.normal(0, 0.2, cout).astype(np.float32)
            state[f"{bn}.running_mean"] = rng.normal(0, 0.2, cout).astype(np.float32)
            state[f"{bn}.running_var"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
            state[f"{bn}.num_batches_tracked"] = np.array(12, np.int64)
    return state


def value(model, layer: str, weight: int = 0, level: str = "backbone") -> np.ndarray:
    """A weight of a backbone layer (or of the encoder, `level="encoder"`)."""
    owner = model.backbone if level == "backbone" else model.backbone.get_layer("encoder")
    return np.asarray(owner.get_layer(layer).weights[weight])


class FakeTensor:
    """Enough of a torch tensor: detach().cpu().float().numpy()."""

    def __init__(self, array):
        self.array = array

    def detach(self):
        return self

    def cpu(self):
        return self

    def float(self):
        return FakeTensor(self.array.astype(np.float32))

    def numpy(self):
        return self.array


class TestStateDictMapping(TestCase):
    @pytest.mark.parametrize("variant", sorted(PUBLISHED_COUNTS))
    def test_fake_has_the_published_parameter_count(self, variant):
        state = published_state_dict(variant)
        trainable = sum(v.size for k, v in state.items() if k.endswith(("weight", "bias")))
        assert trainable == PUBLISHED_COUNTS[variant]

    @pytest.mark.parametrize("bands", [3, 13])
    @pytest.mark.parametrize("variant", ["diff", "conc", "ef"])
    def test_every_kind_of_weight_lands_in_its_layer(self, variant, bands):
        state = published_state_dict(variant, bands, SMALL_WIDTHS)
        model = SiameseChangeModel.from_torch_state_dict(state, variant=variant)
        assert (model.in_channels, model.widths) == (bands, list(SMALL_WIDTHS))
        assert (model.alignment, model.num_classes, model.variant) == ("torch", 2, variant)
        assert model.preprocessor.scaling == "per_image"
        # Conv2d (out, in, kh, kw) -> Conv2D (kh, kw, in, out).
        torch_w = state["conv11.weight"]
        keras_w = value(model, "enc1_1_conv", level="encoder")
        assert keras_w.shape == (3, 3, torch_w.shape[1], torch_w.shape[0])
        assert keras_w[0, 2, 1, 0] == torch_w[0, 1, 0, 2]
        np.testing.assert_array_equal(
            value(model, "enc3_3_conv", 1, "encoder"), state["conv33.bias"]
        )
        # Decoder ConvTranspose2d (in, out, kh, kw) -> Conv2D kernel flipped in kh and kw;
        # the first Keras conv of a level is the highest-numbered PyTorch one.
        first, last = value(model, "dec4_1_conv"), value(model, "dec4_3_conv")
        assert first[0, 2, 5, 1] == state["conv43d.weight"][5, 1, 2, 0]
        assert last[1, 0, 3, 2] == state["conv41d.weight"][3, 2, 1, 2]
        # Stride-2 ConvTranspose2d (in, out, kh, kw) -> Conv2DTranspose (kh, kw, out, in).
        assert value(model, "dec2_up")[2, 0, 1, 3] == state["upconv2.weight"][3, 1, 2, 0]
        # BatchNorm2d: gamma, beta, moving mean and variance.
        for keras_index, field in enumerate(("weight", "bias", "running_mean", "running_var")):
            np.testing.assert_array_equal(
                value(model, "enc3_2_bn", keras_index, "encoder"), state[f"bn32.{field}"]
            )
            np.testing.assert_array_equal(
                value(model, "dec1_1_bn", keras_index), state[f"bn12d.{field}"]
            )
        # The 2-class head, flipped like every decoder conv.
        head = value(model, "head")
        assert head[2, 1, 1, 0] == state["conv11d.weight"][1, 0, 0, 1]
        np.testing.assert_array_equal(value(model, "head", 1), state["conv11d.bias"])

    def test_every_variable_of_the_network_is_filled(self):
        model = SiameseChangeModel.paper("conc", in_channels=4, filters=2)
        slots = torch_slots(model)
        filled = {slot.variable.path for slot in slots}
        network = {v.path for v in model.backbone.weights}
        assert filled == network and len(slots) == len(network)
        assert isinstance(model.backbone.get_layer("dec3_1_bn"), TorchBatchNormalization)

    def test_to_state_dict_writes_the_published_layout_back(self):
        state = published_state_dict("diff", 3, SMALL_WIDTHS)
        model = SiameseChangeModel.from_torch_state_dict(state, variant="diff")
        back = to_state_dict(model)
        assert set(back) == {k for k in state if not k.endswith("num_batches_tracked")}
        for key, array in back.items():
            np.testing.assert_array_equal(array, state[key], err_msg=key)

    def test_folded_head_gives_the_softmax_change_probability(self):
        state = published_state_dict("diff", 3, SMALL_WIDTHS)
        two = SiameseChangeModel.from_torch_state_dict(state, variant="diff")
        one = SiameseChangeModel.from_torch_state_dict(state, variant="diff", num_classes=1)
        flipped = state["conv11d.weight"][:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
        np.testing.assert_array_equal(value(one, "head"), flipped[..., 1:] - flipped[..., :1])
        bias = state["conv11d.bias"]
        np.testing.assert_allclose(value(one, "head", 1), [bias[1] - bias[0]])
        x = np.random.default_rng(0).uniform(0, 255, (2, 19, 21, 3)).astype(np.float32)
        p_two = two.predict((x, x[:, ::-1]), verbose=0)
        p_one = one.predict((x, x[:, ::-1]), verbose=0)
        assert p_two.shape == (2, 19, 21, 2) and p_one.shape == (2, 19, 21, 1)
        np.testing.assert_allclose(p_one[..., 0], p_two[..., 1], atol=1e-6)

    def test_torch_tensors_and_a_data_parallel_prefix_are_read(self):
        state = published_state_dict("ef", 2, SMALL_WIDTHS)
        wrapped = {f"module.{k}": FakeTensor(v.astype(np.float64)) for k, v in state.items()}
        model = SiameseChangeModel.from_torch_state_dict(wrapped, variant="ef")
        assert model.in_channels == 2
        np.testing.assert_array_equal(value(model, "dec1_up", 1), state["upconv1.bias"])


class TestStateDictErrors:
    def test_missing_unexpected_and_misshaped_keys_are_all_named(self):
        state = published_state_dict("diff", 3, SMALL_WIDTHS)
        del state["bn42d.running_var"]
        state["extra.weight"] = np.zeros(3, np.float32)
        state["conv33.weight"] = state["conv33.weight"][:, :4]
        with pytest.raises(CheckpointError) as info:
            SiameseChangeModel.from_torch_state_dict(state, variant="diff", source="net.pth")
        message = str(info.value)
        assert message.startswith("net.pth: not the published SiamUnet_diff state_dict")
        assert "missing: bn42d.running_var" in message
        assert "unexpected: extra.weight" in message
        assert "wrong shape: conv33.weight is (8, 4, 3, 3), expected (8, 8, 3, 3)" in message

    @pytest.mark.parametrize(
        ("saved", "asked", "hint"),
        [("diff", "conc", "SiamUnet_diff or Unet"), ("conc", "diff", "SiamUnet_conc")],
    )
    def test_wrong_variant_names_the_decoder_key_and_the_likely_class(self, saved, asked, hint):
        state = published_state_dict(saved, 3, SMALL_WIDTHS)
        with pytest.raises(CheckpointError, match="conv43d.weight") as info:
            SiameseChangeModel.from_torch_state_dict(state, variant=asked)
        assert hint in str(info.value)

    def test_ef_needs_an_even_input_channel_count(self):
        state = published_state_dict("diff", 3, SMALL_WIDTHS)
        with pytest.raises(CheckpointError, match="3 input channels.*even count"):
            SiameseChangeModel.from_torch_state_dict(state, variant="ef")

    def test_not_a_state_dict_and_no_first_conv(self):
        with pytest.raises(CheckpointError, match="holds a list, not a state_dict"):
            SiameseChangeModel.from_torch_state_dict([1, 2], variant="diff")
        with pytest.raises(CheckpointError, match="no conv11.weight"):
            SiameseChangeModel.from_torch_state_dict({"fc.weight": np.zeros(2)}, variant="diff")
        with pytest.raises(ConfigError, match="variant must be one of"):
            SiameseChangeModel.from_torch_state_dict({}, variant="fresunet")
        with pytest.raises(ConfigError, match="checkpoint decides alignment"):
            SiameseChangeModel.from_torch_state_dict(
                published_state_dict("diff", 3, SMALL_WIDTHS), "diff", alignment="keras"
            )

    def test_a_failed_load_changes_no_weight(self):
        model = SiameseChangeModel.paper("diff", in_channels=3, filters=2)
        before = [np.array(w) for w in model.weights]
        state = published_state_dict("diff", 3, SMALL_WIDTHS)
        del state["conv11d.bias"]
        with pytest.raises(CheckpointError, match="missing: conv11d.bias"):
            load_state_dict(model, state)
        for old, new in zip(before, model.weights):
            np.testing.assert_array_equal(old, np.asarray(new))
        keras_grid = SiameseChangeModel(depth=4, filters=2, alignment="keras")
        with pytest.raises(ConfigError, match="alignment='torch'"):
            load_state_dict(keras_grid, state)


def torch_upsample_reference(x, w, b, skip_hw):
    """PyTorch's ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1), then
    ReplicationPad2d to `skip_hw`, by its definition: input pixel (i, j) adds
    ``x[i, j] @ w[:, :, kh, kw]`` at (2i - 1 + kh, 2j - 1 + kw); the output has 2n rows."""
    n, m, _ = x.shape
    out = np.zeros((2 * n, 2 * m, w.shape[1])) + b
    for i in range(n):
        for j in range(m):
            for kh in range(3):
                for kw in range(3):
                    r, c = 2 * i - 1 + kh, 2 * j - 1 + kw
                    if 0 <= r < 2 * n and 0 <= c < 2 * m:
                        out[r, c] += x[i, j] @ w[:, :, kh, kw]
    rows = np.minimum(np.arange(skip_hw[0]), 2 * n - 1)
    cols = np.minimum(np.arange(skip_hw[1]), 2 * m - 1)
    return out[rows][:, cols]


class TestTorchAlignment(TestCase):
    @pytest.mark.parametrize("skip_hw", [(6, 8), (7, 9)])
    def test_strided_transposed_conv_matches_pytorch_definition(self, skip_hw):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(3, 4, 2))
        w = rng.normal(size=(2, 5, 3, 3))  # PyTorch (in, out, kh, kw)
        b = rng.normal(size=5)
        layer = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="valid")
        layer.build((1, 3, 4, 2))
        layer.set_weights([w.transpose(2, 3, 1, 0), b])
        skip = np.zeros((1, *skip_hw, 1), np.float32)
        got = TorchUpsampleAlign()([layer(x[None].astype(np.float32)), skip])
        expected = torch_upsample_reference(x, w, b, skip_hw)
        np.testing.assert_allclose(np.asarray(got)[0], expected, atol=1e-5)
        # Keras's "same" output is PyTorch's one pixel down and right.
        same = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same")
        same.build((1, 3, 4, 2))
        same.set_weights(layer.get_weights())
        shifted = np.asarray(same(x[None].astype(np.float32)))[0]
        np.testing.assert_allclose(shifted[1:, 1:], expected[:5, :7], atol=1e-5)

    @pytest.mark.parametrize("size", [(45, 37), (16, 17), (64, 64)])
    def test_any_size_of_at_least_two_to_the_depth(self, size):
        model = SiameseChangeModel.paper("conc", in_channels=3, filters=2)
        x = np.random.default_rng(0).integers(0, 256, (1, *size, 3), dtype=np.uint8)
        assert model.predict((x, x), verbose=0).shape == (1, *size, 2)

    def test_batch_norm_running_variance_is_unbiased_as_pytorch(self):
        layer = TorchBatchNormalization(momentum=0.9, epsilon=1e-5)
        x = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)  # 8 values: var 5.25
        out = np.asarray(layer(x, training=True))
        assert float(np.asarray(layer.moving_variance)[0]) == pytest.approx(
            0.9 + 0.1 * 5.25 * 8 / 7
        )
        assert float(np.asarray(layer.moving_mean)[0]) == pytest.approx(0.1 * 3.5)
        np.testing.assert_allclose(
            out.ravel(), (np.arange(8) - 3.5) / np.sqrt(5.25 + 1e-5), rtol=1e-5
        )
        self.run_serialization_test(layer)

    def test_torch_alignment_is_the_default_and_old_configs_load_on_keras_grid(self, tmp_path):
        model = SiameseChangeModel(depth=2, filters=2, preprocessing="unit")
        config = model.get_config()
        assert model.alignment == "torch" and config["backbone"]["config"]["alignment"] == "torch"
        del config["backbone"]["config"]["alignment"]  # a model saved before the option existed
        assert SiameseChangeModel.from_config(config).alignment == "keras"
        # ... also from before the task stored its backbone (architecture at the task level).
        old = {"name": "m", "variant": "diff", "depth": 2, "filters": 2, "preprocessing": "unit"}
        assert SiameseChangeModel.from_config(old).alignment == "keras"
        with pytest.raises(ConfigError, match="alignment must be one of"):
            SiameseChangeModel(alignment="pytorch")

    def test_converted_model_round_trips_through_a_keras_file(self, tmp_path):
        state = published_state_dict("conc", 4, SMALL_WIDTHS)
        model = SiameseChangeModel.from_torch_state_dict(state, variant="conc")
        path = tmp_path / "converted.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert loaded.alignment == "torch"
        x = np.random.default_rng(0).uniform(0, 3000, (1, 33, 35, 4)).astype(np.float32)
        np.testing.assert_allclose(
            loaded.predict((x, x * 0.9), verbose=0), model.predict((x, x * 0.9), verbose=0)
        )


class TestConvertCommand:
    def test_without_torch_names_the_extra(self, tmp_path, monkeypatch, capsys):
        checkpoint = tmp_path / "net.pth"
        checkpoint.write_bytes(b"PK\x03\x04 not really")
        monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
        out = tmp_path / "model.keras"
        code = main(["convert-torch", str(checkpoint), "--variant", "diff", "-o", str(out)])
        assert code == 2
        err = capsys.readouterr().err
        assert f"{checkpoint}: reading a PyTorch checkpoint needs PyTorch" in err
        assert "pip install 'siamese_cd[torch]'" in err
        assert not out.exists()

    def test_missing_file_and_wrong_suffix(self, tmp_path, capsys):
        code = main(["convert-torch", str(tmp_path / "no.pth"), "--variant", "ef", "-o", "m.keras"])
        assert code == 2 and "no.pth: no such file" in capsys.readouterr().err
        code = main(["convert-torch", "x.pth", "--variant", "ef", "-o", str(tmp_path / "m.h5")])
        assert code == 2 and "m.h5: the output must be a .keras file" in capsys.readouterr().err

    @pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
    def test_writes_a_keras_model_from_a_checkpoint(self, tmp_path, monkeypatch, wrapper, capsys):
        state = published_state_dict("ef", 3, SMALL_WIDTHS)
        content = state if wrapper is None else {wrapper: state, "epoch": 12}
        calls = []

        def load(path, map_location=None, weights_only=None):
            calls.append((map_location, weights_only))
            return content

        fake_torch = type(sys)("torch")
        fake_torch.load = load
        monkeypatch.setitem(sys.modules, "torch", fake_torch)
        checkpoint = tmp_path / "net-best_epoch-12.pth.tar"
        checkpoint.write_bytes(b"stand-in")
        out = tmp_path / "out" / "fc-ef.keras"
        argv = ["convert-torch", str(checkpoint), "--variant", "ef", "-o", str(out)]
        assert main([*argv, "--num-classes", "1"]) == 0
        assert calls == [("cpu", True)]
        assert "FC-EF, 3 bands, widths [2, 4, 8, 16], sigmoid head" in capsys.readouterr().out
        loaded = keras.saving.load_model(out)
        assert (loaded.num_classes, loaded.in_channels, loaded.alignment) == (1, 3, "torch")
        # A checkpoint of another network is refused by name, and nothing is written.
        other = tmp_path / "other.keras"
        argv = ["convert-torch", str(checkpoint), "--variant", "conc", "-o", str(other)]
        assert main(argv) == 2
        assert "not the published SiamUnet_conc state_dict" in capsys.readouterr().err
        assert not other.exists()

    def test_pickled_objects_are_read_only_with_allow_pickle(self, tmp_path, monkeypatch, capsys):
        state = published_state_dict("diff", 3, SMALL_WIDTHS)
        calls = []

        class Module:  # a whole nn.Module, as torch.save(model) writes it
            def state_dict(self):
                return state

        def load(path, map_location=None, weights_only=None):
            calls.append(weights_only)
            if weights_only:
                raise RuntimeError("Weights only load failed: unsupported global Module")
            return Module()

        fake_torch = type(sys)("torch")
        fake_torch.load = load
        monkeypatch.setitem(sys.modules, "torch", fake_torch)
        checkpoint = tmp_path / "whole-model.pth"
        checkpoint.write_bytes(b"stand-in")
        out = tmp_path / "m.keras"
        argv = ["convert-torch", str(checkpoint), "--variant", "diff", "-o", str(out)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{checkpoint}: holds pickled Python objects" in err and "--allow-pickle" in err
        assert not out.exists()
        assert main([*argv, "--allow-pickle"]) == 0
        assert calls == [True, False] and out.is_file()
