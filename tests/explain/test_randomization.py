"""Randomization tests (cervix_jax/explain/randomization.py): layer order, schedules, stage
variables, and the known answers of Adebayo et al.: a map that ignores the weights survives
re-initialisation, integrated gradients of a trained model do not."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cervix_jax import explain
from tests.explain import tiny_models

SIZE = 16
MODEL = tiny_models.TinyCNN(features=8)
SCORE = explain.class_score_fn(tiny_models.logits_fn(MODEL), "logit")
SAMPLE = jnp.zeros((1, SIZE, SIZE, 3))
EVAL = {"train": False}


def test_layer_order_follows_the_calls_not_the_sorted_keys():
    model = tiny_models.TinyCNN(features=4, batch_norm=True)
    variables = tiny_models.init(model, jax.random.key(0), SIZE)
    order = explain.layer_order(model, variables, SAMPLE, EVAL)
    assert order == ("Conv_0", "BatchNorm_0", "_Head_0", "Dense_0")
    assert tuple(sorted(variables["params"])) != order  # key order would put Dense_0 second


def test_schedules():
    np.testing.assert_array_equal(
        explain.randomization_schedule(3, "cascading"),
        [[0, 0, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1]],
    )
    np.testing.assert_array_equal(
        explain.randomization_schedule(3, "independent"),
        [[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]],
    )
    with pytest.raises(ValueError, match="Unknown randomization"):
        explain.randomization_schedule(3, "bottom_up")
    # Fewer stages: evenly spread over depth, the whole network always the last one.
    np.testing.assert_array_equal(
        explain.randomization_schedule(4, "cascading", stages=2),
        [[0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]],
    )
    np.testing.assert_array_equal(
        explain.randomization_schedule(4, "independent", stages=2),
        [[0, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]],
    )
    assert explain.randomization_schedule(3, stages=9).shape == (4, 3)  # one per layer at most
    with pytest.raises(ValueError, match="stages=0"):
        explain.randomization_schedule(3, stages=0)


def _same(a, b):
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)))


@pytest.mark.parametrize("kind", explain.RANDOMIZATION_KINDS)
def test_stage_variables_take_the_scheduled_layers_from_the_fresh_init(kind):
    model = tiny_models.TinyCNN(features=4, batch_norm=True)
    # Shifted, so that "trained" differs from any init (BatchNorm starts at ones and zeros).
    trained = jax.tree.map(lambda a: a + 1.0, tiny_models.init(model, jax.random.key(0), SIZE))
    rand = explain.model_randomization(
        model, trained, jax.random.key(1), SAMPLE, kind=kind, apply_kwargs=EVAL
    )
    assert rand.stage_names == ("original", "Dense_0", "_Head_0", "BatchNorm_0", "Conv_0")
    jitted = jax.jit(explain.stage_variables)
    for stage in range(5):
        variables = explain.stage_variables(trained, rand, stage)
        assert _same(variables, jitted(trained, rand, stage))  # traced stage index
        for i, layer in enumerate(rand.layers):
            fresh = bool(explain.randomization_schedule(4, kind)[stage, i])
            for collection in ("params", "batch_stats"):
                if layer in trained[collection]:
                    source = rand.fresh if fresh else trained
                    assert _same(variables[collection][layer], source[collection][layer])
                    assert not _same(trained[collection][layer], rand.fresh[collection][layer])


def _toy_data(key, n):
    """Class c: a bright square in channel c on a dim noisy background."""
    k1, k2 = jax.random.split(key)
    labels = jax.random.randint(k1, (n,), 0, 3)
    images = jax.random.uniform(k2, (n, SIZE, SIZE, 3), jnp.float32, 0, 120)
    square = jnp.zeros((SIZE, SIZE)).at[4:10, 4:10].set(120.0)
    return images + square[None, :, :, None] * jax.nn.one_hot(labels, 3)[:, None, None, :], labels


@pytest.fixture(scope="module")
def trained():
    logits_fn = tiny_models.logits_fn(MODEL)
    optimizer = optax.adam(1e-2)

    def loss(variables, images, labels):
        logits = jax.vmap(lambda im: logits_fn(im, variables))(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(variables, state, key):
        images, labels = _toy_data(key, 32)
        grads = jax.grad(loss)(variables, images, labels)
        updates, state = optimizer.update(grads, state, variables)
        return optax.apply_updates(variables, updates), state

    variables = tiny_models.init(MODEL, jax.random.key(0), SIZE)
    state = optimizer.init(variables)
    for i in range(40):
        variables, state = step(variables, state, jax.random.key(100 + i))
    images, labels = _toy_data(jax.random.key(7), 4)
    assert float(loss(variables, images, labels)) < 0.1  # it learned the toy task
    return variables, images, labels


def edge_maps(images, targets, variables):
    """|horizontal| + |vertical| central differences: depends on the image only."""
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    dx = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    dy = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
    return jnp.abs(dx) + jnp.abs(dy)


def ig_maps(images, targets, variables):
    return explain.integrated_gradients_batch(
        SCORE, images, 0.0, targets, steps=8, f_args=(variables,)
    ).attributions


def test_edge_filter_survives_randomization_and_ig_does_not(trained):
    variables, images, labels = trained
    rand = explain.model_randomization(
        MODEL, variables, jax.random.key(3), SAMPLE, apply_kwargs=EVAL
    )
    assert rand.layers == ("Conv_0", "_Head_0", "Dense_0")
    edges = explain.randomization_curve(edge_maps, variables, rand, images, labels)
    for measure, curve in edges.items():
        assert curve.shape == (4, 4)
        np.testing.assert_allclose(curve, 1.0, atol=1e-5, err_msg=measure)
    ig = explain.randomization_curve(
        ig_maps, variables, rand, images, labels, measures=("spearman", "ssim")
    )
    spearman = np.asarray(ig["spearman"])
    np.testing.assert_allclose(spearman[0], 1.0, atol=1e-6)
    assert np.all(spearman[1:] < 0.95)  # every re-initialised stage changes the maps
    assert spearman[-1].mean() < 0.5
    assert spearman[-1].mean() < spearman[1].mean()  # and more so once everything is random
    assert np.asarray(ig["ssim"])[-1].mean() < 0.9


def class_gradients(images, targets, w):
    return jax.vmap(lambda x, t: jax.grad(lambda z: jnp.sum(w[t] * z))(x))(images, targets)


def test_random_logit():
    targets = jnp.array([0, 1, 2, 2, 1])
    others = explain.random_other_class(jax.random.key(0), jnp.tile(targets, 600), 3)
    assert not np.any(np.asarray(others) == np.tile(np.asarray(targets), 600))
    share = np.mean(np.asarray(others)[np.tile(np.asarray(targets), 600) == 2] == 0)
    assert share == pytest.approx(0.5, abs=0.05)  # uniform over the two other classes
    images = jax.random.uniform(jax.random.key(1), (5, SIZE, SIZE, 3), jnp.float32, 0, 255)
    blind = explain.random_logit(edge_maps, images, targets, jax.random.key(2), 3, args=(None,))
    np.testing.assert_allclose(blind["ssim"], 1.0, atol=1e-5)
    w = jax.random.normal(jax.random.key(3), (3, SIZE, SIZE, 3))
    specific = explain.random_logit(
        class_gradients, images, targets, jax.random.key(2), 3, args=(w,)
    )
    assert np.all(np.asarray(specific["ssim"]) < 0.5)
    assert not np.any(np.asarray(specific["other_class"]) == np.asarray(targets))
