"""Registry, exact parameter counts and output shapes (full-size models via jax.eval_shape)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from cervix_jax import models
from tests.models.conftest import FULL_NAMES, TINY_NAMES

# Trainable parameters (BatchNorm scale/bias included, running statistics not), 5 classes.
# References: torchvision resnet50(num_classes=5) / densenet121(num_classes=5); DenseNet-121 plus
# a 32-channel channel-attention layer (32*2+2 + 2*32+32 = 162); the paper's Attention-92 without
# its never-used shortcut convolutions.
EXPECTED_PARAMS = {
    "resnet50": 23_518_277,
    "densenet121": 6_958_981,
    "densenet121_rca": 6_959_143,
    "attention92": 50_427_589,
}


def _logits_shape(model, size: int, batch: int = 2):
    variables = models.abstract_variables(model, size)
    x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)


def test_registry_names():
    expected = {"resnet50", "densenet121", "densenet121_rca", "attention56", "attention92"}
    assert set(FULL_NAMES) == expected
    assert set(TINY_NAMES) == {f"{n}_tiny" for n in expected}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts_are_exact(name):
    variables = models.abstract_variables(models.create_model(name, 5), 224)
    assert set(variables) == {"params", "batch_stats"}
    assert models.count_params(variables["params"]) == EXPECTED_PARAMS[name]


def test_attention56_matches_wang_et_al():
    # Wang et al. 2017 report 31.9M parameters for Attention-56 with the 1000-class ImageNet head.
    params = models.abstract_variables(models.create_model("attention56", 1000), 224)["params"]
    assert abs(models.count_params(params) - 31.9e6) < 0.1e6
    # ... and one attention module per stage, with 3/2/1 mask downsamplings.
    assert sorted(k for k in params if k.startswith("attention")) == [
        "attention1_1",
        "attention2_1",
        "attention3_1",
    ]
    assert "down2" in params["attention1_1"] and "down1" not in params["attention3_1"]


def test_attention92_has_1_2_3_modules_per_stage():
    params = models.abstract_variables(models.create_model("attention92", 5), 224)["params"]
    names = sorted(k for k in params if k.startswith("attention"))
    assert names == [
        f"attention{s}_{m}" for s, n in ((1, 1), (2, 2), (3, 3)) for m in range(1, n + 1)
    ]


@pytest.mark.parametrize("name", FULL_NAMES)
@pytest.mark.parametrize("size", [224, 64])
def test_full_model_output_shapes(name, size):
    out = _logits_shape(models.create_model(name, 5), size)
    assert out.shape == (2, 5) and out.dtype == jnp.float32


@pytest.mark.parametrize("name", FULL_NAMES)
def test_last_conv_shape_at_224(name):
    model = models.create_model(name, 5)
    variables = models.abstract_variables(model, 224)
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]), variables, x
    )
    channels = 1024 if name.startswith("densenet") else 2048
    assert state["intermediates"]["last_conv"][0].shape == (2, 7, 7, channels)


def test_rca_channel_attention_sits_on_the_last_dense_layer():
    params = models.abstract_variables(models.create_model("densenet121_rca", 5), 64)["params"]
    ca = params["denseblock4_denselayer16"]["channel_attention"]
    assert ca["conv_down"]["kernel"].shape == (1, 1, 32, 2)
    assert ca["conv_up"]["kernel"].shape == (1, 1, 2, 32)
    layers_with_ca = [k for k, v in params.items() if "channel_attention" in v]
    assert layers_with_ca == ["denseblock4_denselayer16"]


@pytest.mark.parametrize(
    "options, expected_modules, extra_params",
    [
        # After each dense block: CA on 256, 512, 1024, 1024 channels (r=16).
        (
            dict(ca_placement="dense_blocks"),
            ["ca_block1", "ca_block2", "ca_block3", "ca_block4"],
            sum(2 * c * (c // 16) + c // 16 + c for c in (256, 512, 1024, 1024)),
        ),
        # After each transition: 128, 256, 512 channels.
        (
            dict(ca_placement="transitions"),
            ["ca_transition1", "ca_transition2", "ca_transition3"],
            sum(2 * c * (c // 16) + c // 16 + c for c in (128, 256, 512)),
        ),
        # RCAB at the paper's place: two 3x3 convs with bias (32 -> 32) plus the CA layer.
        (dict(ca_block="rcab"), [], 2 * (9 * 32 * 32 + 32) + 162),
    ],
)
def test_rca_placement_options(options, expected_modules, extra_params):
    base = models.abstract_variables(models.create_model("densenet121", 5), 64)["params"]
    params = models.abstract_variables(models.create_model("densenet121_rca", 5, **options), 64)[
        "params"
    ]
    assert sorted(k for k in params if k.startswith("ca_")) == expected_modules
    has_last_layer_ca = "channel_attention" in params["denseblock4_denselayer16"]
    assert has_last_layer_ca == ("ca_placement" not in options)
    assert models.count_params(params) - models.count_params(base) == extra_params


def test_bfloat16_compute_keeps_float32_params():
    model = models.create_model("densenet121_rca", 5, dtype="bfloat16")
    variables = models.abstract_variables(model, 64)
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(variables)}
    assert dtypes == {jnp.dtype(jnp.float32)}
    out = _logits_shape(model, 64)
    assert out.dtype == jnp.float32  # logits are cast back for a float32 loss

    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]),
        variables,
        jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32),
    )
    assert state["intermediates"]["last_conv"][0].dtype == jnp.bfloat16


def test_create_model_errors_name_the_problem():
    with pytest.raises(ValueError, match="resnet18.*registered models: resnet50"):
        models.create_model("resnet18", 5)
    with pytest.raises(ValueError, match=r"no option\(s\) \['ca_placement'\]"):
        models.create_model("resnet50", 5, ca_placement="last_layer")
    with pytest.raises(ValueError, match="dtype"):
        models.create_model("resnet50", 5, dtype="int8")
    bad = models.create_model("densenet121_rca_tiny", 5, ca_placement="everywhere")
    with pytest.raises(ValueError, match="everywhere"):
        models.abstract_variables(bad, 32)


def test_options_reach_the_module():
    model = models.create_model("attention92", 3, dropout_rate=0.1, align_corners=False)
    assert (model.num_classes, model.dropout_rate, model.align_corners) == (3, 0.1, False)
    assert model.modules_per_stage == (1, 2, 3)
