"""Max-sensitivity (cervix_jax/explain/robustness.py): zero for constant gradients, a closed
form for a quadratic model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import explain

SHAPE = (16, 16, 3)
A = jax.random.uniform(jax.random.key(0), SHAPE, jnp.float32, 0.5, 2.0)


def gradient(image, target, w):
    return jax.grad(lambda z: jnp.sum(w[target] * z))(image)


def quadratic_gradient(image):
    return jax.grad(lambda z: 0.5 * jnp.sum(A * z * z))(image)  # = A * image


def test_gradient_of_a_linear_model_has_zero_sensitivity():
    w = jax.random.normal(jax.random.key(1), (2, *SHAPE))
    images = jax.random.uniform(jax.random.key(2), (3, *SHAPE), jnp.float32, 0, 255)
    values = explain.max_sensitivity(
        gradient, images, jax.random.key(3), jnp.array([0, 1, 1]), args=(w,)
    )
    np.testing.assert_array_equal(values, np.zeros(3))


def test_quadratic_model_matches_the_closed_form():
    # attr(x + d) - attr(x) = A * d with d uniform in [-r, r]: ||A d|| / ||A x|| is at most
    # r ||A|| / ||A x|| and concentrates at r ||A|| / (sqrt(3) ||A x||) (768 features).
    images = jax.random.uniform(jax.random.key(4), (2, *SHAPE), jnp.float32, 0, 255)
    r = 5.1
    values = np.asarray(
        explain.max_sensitivity(quadratic_gradient, images, jax.random.key(5), radius=r)
    )
    norm_a = float(jnp.linalg.norm(A))
    norm_ax = np.asarray([float(jnp.linalg.norm(A * x)) for x in images])
    assert np.all(values <= r * norm_a / norm_ax)
    np.testing.assert_allclose(values, r * norm_a / (np.sqrt(3.0) * norm_ax), rtol=0.1)
    # L-infinity: max |A d| / max |A x| -> r max(A) / max |A x| (768 uniform draws reach r).
    inf = np.asarray(
        explain.max_sensitivity(
            quadratic_gradient, images, jax.random.key(5), radius=r, ord=np.inf, num_samples=4
        )
    )
    top = np.asarray([float(jnp.abs(A * x).max()) for x in images])
    assert np.all(inf <= r * float(A.max()) / top + 1e-6)
    assert np.all(inf >= 0.8 * r * float(A.max()) / top)


def test_all_zero_map_divides_by_one():
    values = explain.max_sensitivity(
        lambda x: jnp.zeros_like(x), jnp.ones((1, *SHAPE)), jax.random.key(6), num_samples=2
    )
    assert float(values[0]) == pytest.approx(0.0)


def test_one_feature_takes_the_largest_draw():
    # One pixel: |d_s| / |x| with d_s uniform in [-r, r]; the largest of 64 draws is within
    # 10% of r (all 64 below 0.9 r has probability 0.9^64 = 1e-3), a mean would be near r / 2.
    images = jnp.array([4.0, -8.0]).reshape(2, 1, 1, 1)
    values = explain.max_sensitivity(
        lambda x: x, images, jax.random.key(7), radius=2.0, num_samples=64
    )
    np.testing.assert_array_less(values, [2.0 / 4.0 + 1e-6, 2.0 / 8.0 + 1e-6])
    np.testing.assert_array_less([0.9 * 2.0 / 4.0, 0.9 * 2.0 / 8.0], values)


def test_batched_method_keeps_each_images_key():
    """A batched method with per-image randomness (its key as a row argument): the perturbed
    copies, 2 at a time, carry their image's key, so a map that is that randomness plus the
    gradient of a linear model does not move at all (with the key drawn afresh it would).
    `max_sensitivity` runs through the same code (the tests above)."""
    w = jax.random.normal(jax.random.key(8), SHAPE)

    def method(images, targets, keys):
        del targets
        noise = jax.vmap(lambda k: jax.random.normal(k, SHAPE))(keys)
        return noise + jax.vmap(jax.grad(lambda z: jnp.sum(w * z)))(images)

    images = jax.random.uniform(jax.random.key(9), (3, *SHAPE), jnp.float32, 0, 255)
    keys = jax.random.split(jax.random.key(10), 3)
    values = explain.batched_max_sensitivity(
        method,
        images,
        keys,
        num_samples=5,
        together=2,
        row_args=(jax.random.split(jax.random.key(11), 3),),
    )
    np.testing.assert_allclose(values, np.zeros(3), atol=1e-6)
