"""The attention networks' own maps (cervix_jax/explain/attention.py)."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import explain, models

SIZE = 32


def _sown(model, variables, x, name):
    apply = jax.jit(lambda v, z: model.apply(v, z, train=False, mutable=["intermediates"]))
    _, state = apply(variables, x)
    flat = flax.traverse_util.flatten_dict(state["intermediates"])
    return [value[0] for path, value in flat.items() if path[-1] == name]


def _upsampled(maps):
    return [jax.image.resize(m, (m.shape[0], SIZE, SIZE), "bilinear") for m in maps]


def test_residual_attention_map_is_the_mean_of_the_upsampled_soft_masks():
    model = models.create_model("attention56_tiny", 5)
    variables = models.init_variables(model, jax.random.key(0), SIZE)
    x = jax.random.normal(jax.random.key(1), (2, SIZE, SIZE, 3))
    assert explain.attention_kind(model, variables, (SIZE, SIZE, 3)) == models.SOFT_MASK
    got = explain.attention_maps(model, variables, x)
    masks = _sown(model, variables, x, models.SOFT_MASK)
    assert len(masks) == 3  # one attention module per stage
    expected = jnp.mean(jnp.stack(_upsampled(masks)), axis=0)
    assert got.shape == (2, SIZE, SIZE) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert 0.0 < float(got.min()) <= float(got.max()) < 1.0


def test_channel_attention_map_is_the_deepest_layers_weighted_features():
    model = models.create_model("densenet121_rca_tiny", 5, ca_placement="transitions")
    variables = models.init_variables(model, jax.random.key(0), SIZE)
    x = jax.random.normal(jax.random.key(1), (2, SIZE, SIZE, 3))
    assert explain.attention_kind(model, variables, (SIZE, SIZE, 3)) == (
        models.CHANNEL_ATTENTION_MAP
    )
    cams = _sown(model, variables, x, models.CHANNEL_ATTENTION_MAP)
    assert [c.shape[1] for c in cams] == [4, 2, 1]  # transitions 1-3, the deepest last
    np.testing.assert_allclose(
        explain.attention_maps(model, variables, x), _upsampled(cams)[-1], rtol=1e-5, atol=1e-7
    )


def test_the_sown_channel_map_weights_the_activated_input_by_the_attention():
    layer = models.ChannelAttention(reduction=2)
    x = jax.random.normal(jax.random.key(3), (1, 5, 6, 8))
    params = layer.init(jax.random.key(4), x)
    y, state = layer.apply(params, x, mutable=["intermediates"])
    weights = y / x  # the layer rescales each channel by its attention weight
    (cam,) = state["intermediates"][models.CHANNEL_ATTENTION_MAP]
    np.testing.assert_allclose(cam, (jax.nn.relu(x) * weights).mean(-1), rtol=1e-5, atol=1e-7)


def test_networks_without_attention_are_refused_with_a_clear_error():
    model = models.create_model("resnet50_tiny", 5)
    variables = models.init_variables(model, jax.random.key(0), SIZE)
    with pytest.raises(explain.ExplainError, match="needs a network with attention.*attention56"):
        explain.attention_kind(model, variables, (SIZE, SIZE, 3))
    with pytest.raises(explain.ExplainError, match="ResNet sows no"):
        explain.attention_maps(model, variables, jnp.zeros((1, SIZE, SIZE, 3)))
