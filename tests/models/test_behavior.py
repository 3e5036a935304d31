"""Real forward passes on the tiny variants: shapes, train vs eval, Grad-CAM hook, odd sizes,
bilinear upsampling, and overfitting a batch of 8 images."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cervix_jax import models
from cervix_jax.models.residual_attention import upsample_bilinear
from tests.models.conftest import TINY_NAMES


def _images(n: int, size: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (n, size, size, 3), jnp.float32)


@pytest.mark.parametrize("name", TINY_NAMES)
def test_tiny_forward_shapes_and_last_conv(tiny, name):
    model, variables = tiny(name)
    assert set(variables) == {"params", "batch_stats"}
    logits, state = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(
        variables, _images(2, 64)
    )
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
    # The Grad-CAM map is a top-level entry, [B, 64/32, 64/32, C].
    (last_conv,) = state["intermediates"]["last_conv"]
    assert last_conv.shape[:3] == (2, 2, 2)
    assert np.all(np.asarray(last_conv) >= 0)  # taken after the final ReLU
    # The attention networks' own maps (explain's method 'attention'): [B, h, w] float32.
    flat = flax.traverse_util.flatten_dict(state["intermediates"])
    # What the head reads (models.pooled_features): [B, D], D the last conv map's channels.
    (pooled,) = state["intermediates"][models.POOLED_FEATURES]
    assert pooled.shape == (2, last_conv.shape[-1])
    np.testing.assert_allclose(
        pooled, np.asarray(last_conv).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6
    )
    top_level = {"last_conv", models.POOLED_FEATURES}
    sown = {"/".join(path): value[0] for path, value in flat.items() if path[-1] not in top_level}
    expected = {
        "attention56_tiny": {"attention1_1", "attention2_1", "attention3_1"},
        "attention92_tiny": {"attention1_1", "attention2_1", "attention2_2", "attention3_1"},
    }
    if name in expected:
        assert set(sown) == {f"{m}/{models.SOFT_MASK}" for m in expected[name]}
        for key, mask in sown.items():
            stage = int(key[len("attention")])
            assert mask.shape == (2, 64 // 2 ** (stage + 1), 64 // 2 ** (stage + 1)), key
            assert mask.dtype == jnp.float32 and 0 < mask.min() <= mask.max() < 1  # sigmoid
    elif name == "densenet121_rca_tiny":
        key = f"denseblock4_denselayer2/channel_attention/{models.CHANNEL_ATTENTION_MAP}"
        assert list(sown) == [key] and sown[key].shape == (2, 2, 2)
        assert np.all(np.asarray(sown[key]) >= 0)
    else:
        assert sown == {}  # no attention, nothing sown


def test_init_variables_accepts_shapes_and_is_deterministic(tiny):
    model, variables = tiny("resnet50_tiny")
    again = models.init_variables(model, jax.random.key(0), (4, 48, 40, 3))
    jax.tree.map(np.testing.assert_array_equal, variables, again)
    other = models.init_variables(model, jax.random.key(1), 32)
    assert not np.array_equal(
        other["params"]["conv1"]["kernel"], again["params"]["conv1"]["kernel"]
    )
    with pytest.raises(ValueError, match="input_shape"):
        models.init_variables(model, jax.random.key(0), (32, 32))


# The head and BatchNorm code is shared by all families; two keep the compile time down.
@pytest.mark.parametrize("name", ["resnet50_tiny", "densenet121_rca_tiny"])
def test_train_and_eval_modes(tiny, name):
    model, variables = tiny(name)
    x = _images(4, 32, seed=1)

    def run(v, x, train, seed):
        return model.apply(
            v, x, train=train, rngs={"dropout": jax.random.key(seed)}, mutable=["batch_stats"]
        )

    run = jax.jit(run, static_argnums=2)

    # Eval: deterministic whatever the dropout key, running statistics untouched.
    eval_a, eval_state = run(variables, x, False, 0)
    eval_b, _ = run(variables, x, False, 1)
    np.testing.assert_array_equal(eval_a, eval_b)
    jax.tree.map(np.testing.assert_array_equal, eval_state["batch_stats"], variables["batch_stats"])

    # Train: dropout depends on the key (and is reproducible with the same key).
    train_a, train_state = run(variables, x, True, 0)
    train_b, _ = run(variables, x, True, 1)
    train_a2, _ = run(variables, x, True, 0)
    np.testing.assert_array_equal(train_a, train_a2)
    assert not np.allclose(train_a, train_b)
    assert not np.allclose(train_a, eval_a)

    # Train updates every BatchNorm's running statistics, with torch's momentum 0.1.
    old = jax.tree.leaves(variables["batch_stats"])
    new = jax.tree.leaves(train_state["batch_stats"])
    assert len(old) == len(new) > 0
    assert all(not np.allclose(a, b) for a, b in zip(old, new, strict=True))


def test_batch_norm_running_mean_uses_torch_momentum(tiny):
    model, variables = tiny("resnet50_tiny")
    x = _images(4, 32, seed=2)
    _, state = jax.jit(
        lambda v, x: model.apply(
            v,
            x,
            train=True,
            rngs={"dropout": jax.random.key(0)},
            mutable=["batch_stats", "intermediates"],
            capture_intermediates=lambda mdl, _: mdl.scope.path == ("conv1",),
        )
    )(variables, x)
    (stem,) = state["intermediates"]["conv1"]["__call__"]
    batch_mean = np.asarray(stem).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(
        state["batch_stats"]["bn1"]["mean"], 0.1 * batch_mean, rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("name", ["resnet50_tiny", "densenet121_tiny"])
def test_last_conv_gradient_through_perturbation(tiny, name):
    """d logit_c / d last_conv = W_head[:, c] / (h * w) exactly (mean pool then dense)."""
    model, variables = tiny(name)
    x = _images(2, 64, seed=3)
    perturbation = models.last_conv_perturbation(model, x.shape)
    assert jax.tree.map(jnp.shape, perturbation) == {"last_conv": (2, 2, 2, model_width(model))}

    def score(p):
        logits = model.apply({**variables, "perturbations": p}, x, train=False)
        return logits[:, 3].sum(), logits

    (_, logits), grads = jax.value_and_grad(score, has_aux=True)(perturbation)
    np.testing.assert_allclose(logits, model.apply(variables, x, train=False), rtol=1e-6)
    w = np.asarray(variables["params"]["head"]["kernel"][:, 3]) / 4.0
    np.testing.assert_allclose(grads["last_conv"], np.broadcast_to(w, (2, 2, 2, w.size)), rtol=1e-5)


def model_width(model) -> int:
    variables = models.abstract_variables(model, 32)
    return variables["params"]["head"]["kernel"].shape[0]


@pytest.mark.parametrize("size", [72, 100])
def test_attention_net_any_input_size(tiny, size):
    model, variables = tiny("attention92_tiny")
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, _images(1, size))
    assert logits.shape == (1, 5) and np.all(np.isfinite(logits))
    # The full Attention-92 traces at the same odd sizes (shapes only).
    full = models.create_model("attention92", 5)
    out = jax.eval_shape(
        lambda v, x: full.apply(v, x, train=False),
        models.abstract_variables(full, size),
        jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32),
    )
    assert out.shape == (1, 5)


def test_upsample_bilinear_conventions():
    x = jax.random.normal(jax.random.key(0), (2, 4, 7, 3))
    # Half-pixel centres: the same as jax.image.resize's linear upsampling.
    np.testing.assert_allclose(
        upsample_bilinear(x, (7, 13), align_corners=False),
        jax.image.resize(x, (2, 7, 13, 3), method="linear"),
        rtol=1e-5,
        atol=1e-6,
    )
    # align_corners=True (torch UpsamplingBilinear2d): corners kept, ramps stay exact ramps.
    y = upsample_bilinear(x, (7, 13), align_corners=True)
    np.testing.assert_allclose(
        y[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]], rtol=1e-6
    )
    ramp = jnp.broadcast_to(jnp.arange(4.0)[None, :, None, None], (1, 4, 5, 1))
    up = upsample_bilinear(ramp, (10, 5), align_corners=True)
    np.testing.assert_allclose(up[0, :, 0, 0], np.linspace(0.0, 3.0, 10), rtol=1e-6)


@pytest.mark.parametrize(
    "name",
    # The attention nets' train step takes 15-25 s to compile on 2 cores.
    [pytest.param(n, marks=pytest.mark.slow) if "attention" in n else n for n in TINY_NAMES],
)
def test_tiny_model_overfits_a_batch_of_8(tiny, name):
    _, variables = tiny(name)
    # Same parameters, dropout off: the test is about fitting capacity and gradients.
    model = models.create_model(name, 5, dropout_rate=0.0)
    x = _images(8, 32, seed=4)
    y = jnp.array([0, 1, 2, 3, 4, 0, 1, 2])
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, batch_stats, opt_state):
        def loss_fn(p):
            logits, new = model.apply(
                {"params": p, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

        (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new["batch_stats"], opt_state, loss

    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    losses = []
    for _ in range(40):
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state)
        losses.append(float(loss))
    assert losses[0] > 1.0, losses
    assert min(losses[-5:]) < 0.05, losses


def test_bfloat16_forward_tracks_float32(tiny):
    _, variables = tiny("densenet121_rca_tiny")
    x = _images(4, 32, seed=5)
    logits = {}
    for dtype in ("float32", "bfloat16"):
        model = models.create_model("densenet121_rca_tiny", 5, dtype=dtype)
        logits[dtype] = jax.jit(lambda v, x, m=model: m.apply(v, x, train=False))(variables, x)
    assert logits["bfloat16"].dtype == jnp.float32
    scale = float(jnp.abs(logits["float32"]).max())
    error = float(jnp.abs(logits["bfloat16"] - logits["float32"]).max())
    assert 0 < error < 0.05 * scale  # computed in bfloat16 (not identical), yet close
    up = upsample_bilinear(x.astype(jnp.bfloat16), (40, 40), align_corners=True)
    assert up.dtype == jnp.bfloat16


def test_remat_gives_the_same_gradients(tiny):
    name = "resnet50_tiny"
    _, variables = tiny(name)
    x, y = _images(4, 32, seed=6), jnp.array([0, 1, 2, 3])

    def loss_and_grads(model):
        def loss_fn(params):
            logits, new = model.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                x,
                train=True,
                rngs={"dropout": jax.random.key(0)},
                mutable=["batch_stats"],
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, new

        return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])

    (loss, stats), grads = loss_and_grads(models.create_model(name, 5))
    (loss_r, stats_r), grads_r = loss_and_grads(models.create_model(name, 5, remat=True))
    np.testing.assert_allclose(loss_r, loss, rtol=1e-5)

    # Same maths, other summation order: tiny gradients that are sums of cancelling terms
    # differ in relative terms, so compare against the scale of all gradients together.
    def max_abs_difference(a, b):
        return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))

    leaves, leaves_r = jax.tree.leaves(grads), jax.tree.leaves(grads_r)
    scale = max(float(np.abs(g).max()) for g in leaves)
    assert max_abs_difference(leaves_r, leaves) <= 1e-4 * scale
    stats, stats_r = jax.tree.leaves(stats), jax.tree.leaves(stats_r)
    assert max_abs_difference(stats_r, stats) <= 1e-5 * max(float(np.abs(s).max()) for s in stats)


@pytest.mark.parametrize("name", ["resnet50", "densenet121_rca", "attention92"])
def test_remat_keeps_parameter_names(name):
    plain = models.abstract_variables(models.create_model(name, 5), 64)
    remat = models.abstract_variables(models.create_model(name, 5, remat=True), 64)
    assert jax.tree.map(np.shape, remat) == jax.tree.map(np.shape, plain)


@pytest.mark.parametrize("train", [True, False])
def test_folded_batch_norm_equals_flax_batch_norm(train):
    """Our one-multiply-add BatchNorm: Flax's variables, outputs, statistics and gradients."""
    import flax.linen as nn

    ours = models.BatchNorm(use_running_average=not train)
    theirs = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    # Per-channel offsets of 3 and scales of 0.5-2 exercise the folded bias b = bias - mean * a.
    x = 3.0 + jax.random.normal(jax.random.key(0), (4, 6, 5, 7)) * jnp.linspace(0.5, 2.0, 7)
    variables = theirs.init(jax.random.key(1), x)
    assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(variables)
    keys = jax.random.split(jax.random.key(2), 4)
    variables = {  # non-trivial parameters and running statistics
        "params": {
            "scale": 1.0 + 0.3 * jax.random.normal(keys[0], (7,)),
            "bias": jax.random.normal(keys[1], (7,)),
        },
        "batch_stats": {
            "mean": jax.random.normal(keys[2], (7,)),
            "var": jax.random.uniform(keys[3], (7,), minval=0.5, maxval=2.0),
        },
    }

    def run(module, params, x):
        y, updates = module.apply(
            {**variables, "params": params}, x, mutable=["batch_stats"] if train else []
        )
        return (y * jnp.cos(y)).sum(), (y, updates)

    outputs = []
    for module in (ours, theirs):
        (_, (y, updates)), grads = jax.value_and_grad(run, argnums=(1, 2), has_aux=True)(
            module, variables["params"], x
        )
        outputs.append((y, updates, grads))
    (y0, u0, g0), (y1, u1, g1) = outputs
    np.testing.assert_allclose(y0, y1, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves((u0, g0)), jax.tree.leaves((u1, g1)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    if train:  # the batch was normalised: zero mean, unit variance before scale and bias
        z = (y0 - variables["params"]["bias"]) / variables["params"]["scale"]
        np.testing.assert_allclose(z.mean((0, 1, 2)), 0.0, atol=1e-5)
        np.testing.assert_allclose(z.var((0, 1, 2)), 1.0, rtol=1e-3)
