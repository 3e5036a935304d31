"""torchvision state dict -> Flax conversion, checkpoint format and merging (no torch needed;
the numerical proof against torchvision is in test_torchvision_parity.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import save_file

from cervix_jax import models
from cervix_jax.models import torchvision as tv
from tools import convert_torchvision


def _fake_state_dict(arch: str, num_classes: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = {
        key: rng.standard_normal(shape, dtype=np.float32)
        for key, shape in tv.expected_torch_keys(arch, num_classes).items()
    }
    state[
        "features.norm0.num_batches_tracked" if "densenet" in arch else "bn1.num_batches_tracked"
    ] = np.array(7)
    return state


@pytest.fixture(scope="module")
def densenet_state():
    return _fake_state_dict("densenet121")


def _zeros(model, size=32):
    return jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), models.abstract_variables(model, size)
    )


def test_expected_keys_are_torchvision_names():
    keys = tv.expected_torch_keys("resnet50")
    assert keys["conv1.weight"] == (64, 3, 7, 7)
    assert keys["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert keys["layer4.2.bn3.running_var"] == (2048,)
    assert keys["fc.weight"] == (1000, 2048)
    dense = tv.expected_torch_keys("densenet121", 5)
    assert dense["features.denseblock4.denselayer16.conv2.weight"] == (32, 128, 3, 3)
    assert dense["features.transition3.conv.weight"] == (512, 1024, 1, 1)
    assert dense["features.norm5.running_mean"] == (1024,)
    assert dense["classifier.weight"] == (5, 1024)
    # Every torchvision tensor except num_batches_tracked: 4 per BN, 1 per conv, 2 for the head.
    # ResNet-50: 53 convs and 53 BNs. DenseNet-121: 1 + 58 * 2 + 3 = 120 convs, 121 BNs.
    assert len(keys) == 53 * 4 + 53 + 2
    assert len(dense) == 121 * 4 + 120 + 2


def test_conversion_layouts(densenet_state):
    variables = models.from_torchvision("densenet121", densenet_state)
    params, stats = variables["params"], variables["batch_stats"]
    np.testing.assert_array_equal(
        params["conv0"]["kernel"], densenet_state["features.conv0.weight"].transpose(2, 3, 1, 0)
    )
    layer = "denseblock3_denselayer7"
    torch_layer = "features.denseblock3.denselayer7"
    np.testing.assert_array_equal(
        params[layer]["norm2"]["scale"], densenet_state[f"{torch_layer}.norm2.weight"]
    )
    np.testing.assert_array_equal(
        params[layer]["norm2"]["bias"], densenet_state[f"{torch_layer}.norm2.bias"]
    )
    np.testing.assert_array_equal(
        stats[layer]["norm2"]["mean"], densenet_state[f"{torch_layer}.norm2.running_mean"]
    )
    np.testing.assert_array_equal(
        stats[layer]["norm2"]["var"], densenet_state[f"{torch_layer}.norm2.running_var"]
    )
    np.testing.assert_array_equal(params["head"]["kernel"], densenet_state["classifier.weight"].T)
    np.testing.assert_array_equal(params["head"]["bias"], densenet_state["classifier.bias"])
    # The tree is exactly the model's, with the checkpoint's 1000 classes.
    abstract = models.abstract_variables(models.create_model("densenet121", 1000), 32)
    assert jax.tree.map(np.shape, abstract) == jax.tree.map(np.shape, variables)


def test_old_style_densenet_keys_are_accepted(densenet_state):
    # torchvision's own densenet121-a639ec97.pth names layer modules 'norm.1', 'conv.2', ...
    old = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in densenet_state.items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    converted = models.from_torchvision("densenet121", old)
    expected = models.from_torchvision("densenet121", densenet_state)
    jax.tree.map(np.testing.assert_array_equal, converted, expected)


def test_errors_name_every_bad_key(densenet_state):
    bad = dict(densenet_state)
    del bad["features.denseblock2.denselayer3.conv1.weight"]
    del bad["features.norm5.running_var"]
    bad["features.denseblock5.denselayer1.conv1.weight"] = np.zeros((1,), np.float32)
    bad["features.transition1.conv.weight"] = np.zeros((128, 256, 3, 3), np.float32)
    with pytest.raises(ValueError) as info:
        models.from_torchvision("densenet121", bad)
    message = str(info.value)
    assert "missing keys (2)" in message
    assert "features.denseblock2.denselayer3.conv1.weight" in message
    assert "features.norm5.running_var" in message
    assert "unexpected keys (1)" in message and "features.denseblock5.denselayer1" in message
    assert (
        "features.transition1.conv.weight: expected (128, 256, 1, 1), found (128, 256, 3, 3)"
        in (message)
    )
    with pytest.raises(
        ValueError, match=r"(?s)resnet50 \(0 of 267 expected keys found\).*missing keys \(267\)"
    ):
        models.from_torchvision("resnet50", densenet_state)
    with pytest.raises(ValueError, match="vgg16"):
        models.from_torchvision("vgg16", densenet_state)


def test_merge_into_rca_keeps_head_and_attention_fresh(densenet_state):
    pretrained = models.from_torchvision("densenet121_rca", densenet_state)
    fresh = _zeros(models.create_model("densenet121_rca", 5))
    merged, kept_fresh = models.merge_pretrained(fresh, pretrained)
    ca = "params/denseblock4_denselayer16/channel_attention"
    assert kept_fresh == sorted(
        [
            f"{ca}/conv_down/bias",
            f"{ca}/conv_down/kernel",
            f"{ca}/conv_up/bias",
            f"{ca}/conv_up/kernel",
            "params/head/bias",
            "params/head/kernel",
        ]
    )
    flat_merged = traverse_util.flatten_dict(merged)
    flat_pre = traverse_util.flatten_dict(pretrained)
    for path, value in flat_merged.items():
        if "/".join(path) in kept_fresh:
            assert not np.any(value)
        else:
            np.testing.assert_array_equal(value, flat_pre[path])
    assert jax.tree.map(np.shape, merged) == jax.tree.map(np.shape, fresh)


def test_merge_rejects_another_architecture(densenet_state):
    pretrained = models.from_torchvision("densenet121", densenet_state)
    with pytest.raises(
        ValueError,
        match=r"(?s)\(0 of 267 model values.*not in the model \(604\):\n    batch_stats/dense",
    ):
        models.merge_pretrained(_zeros(models.create_model("resnet50", 5)), pretrained)
    with pytest.raises(ValueError, match="params/conv0/kernel: model .*, pretrained"):
        models.merge_pretrained(_zeros(models.create_model("densenet121_tiny", 5)), pretrained)


def test_convert_tool_writes_a_loadable_checkpoint(tmp_path, densenet_state):
    src = tmp_path / "densenet121.safetensors"
    save_file(densenet_state, str(src))
    out = tmp_path / "converted"
    convert_torchvision.convert("densenet121", str(src), str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", "densenet121.safetensors"]
    loaded = models.load_converted(out)
    expected = models.from_torchvision("densenet121", densenet_state)
    jax.tree.map(np.testing.assert_array_equal, loaded, expected)
    meta = tv.converted_metadata(out)
    assert meta["arch"] == "densenet121" and meta["num_classes"] == 1000
    assert meta["num_params"] == models.count_params(expected["params"])
    assert len(meta["source_sha256"]) == 64

    with pytest.raises(FileExistsError, match="--force"):
        convert_torchvision.convert("densenet121", str(src), str(out))
    convert_torchvision.convert("densenet121", str(src), str(out), force=True)
    with pytest.raises(FileNotFoundError, match="convert_torchvision.py"):
        models.load_converted(tmp_path)


def test_read_state_dict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        tv.read_state_dict(tmp_path / "missing.pth")
    odd = tmp_path / "weights.h5"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="'.h5'.*safetensors"):
        tv.read_state_dict(odd)


def test_non_finite_weights_are_refused_by_name(tmp_path, densenet_state):
    poisoned = dict(densenet_state)
    poisoned["features.conv0.weight"] = np.full_like(poisoned["features.conv0.weight"], np.nan)
    poisoned["classifier.bias"] = np.full_like(poisoned["classifier.bias"], np.inf)
    with pytest.raises(ValueError, match=r"2 tensor\(s\): classifier.bias, features.conv0.weight"):
        models.from_torchvision("densenet121", poisoned)
    # The tool refuses it too, and writes nothing.
    src = tmp_path / "nan.safetensors"
    save_file(poisoned, str(src))
    with pytest.raises(ValueError, match="features.conv0.weight"):
        convert_torchvision.convert("densenet121", str(src), str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.safetensors"]


def test_garbage_safetensors_is_named(tmp_path):
    garbage = tmp_path / "weights.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="weights.safetensors: not a readable .safetensors file"):
        tv.read_state_dict(garbage)


def test_force_never_replaces_a_folder_that_is_not_a_converted_checkpoint(tmp_path):
    model = models.create_model("resnet50_tiny", 5)
    variables = models.init_variables(model, jax.random.key(0), 32)
    folder = tmp_path / "my_results"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not a converted checkpoint"):
        models.save_converted(variables, folder, overwrite=True)
    assert (folder / "thesis.tex").read_text() == "years of work"
    # A converted checkpoint is replaced.
    models.save_converted(variables, tmp_path / "converted")
    models.save_converted(variables, tmp_path / "converted", overwrite=True)
