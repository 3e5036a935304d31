"""The noise tunnel (cervix_jax/explain/noise_tunnel.py): SmoothGrad, SmoothGrad-squared and
VarGrad around any method, with closed forms.

VarGrad "zero" is float32 zero up to the rounding of a mean of equal values (~1e-15 for maps
of order 1), hence ``atol=1e-12``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import explain

X = jnp.linspace(-1.0, 1.0, 12).reshape(2, 2, 3)


def cube(x):
    return jnp.sum(x**3) / 3.0  # gradient x^2


def gradient_of_cube(x):
    return jax.grad(cube)(x)


def test_zero_noise_gives_the_method_back():
    key = jax.random.key(0)
    grad = gradient_of_cube(X)
    options = dict(num_samples=3, noise_level=0.0, value_range=1.0)
    sg = explain.noise_tunnel(gradient_of_cube, X, key, kind="smoothgrad", **options)
    sq = explain.noise_tunnel(gradient_of_cube, X, key, kind="smoothgrad_sq", **options)
    var = explain.noise_tunnel(gradient_of_cube, X, key, kind="vargrad", **options)
    np.testing.assert_allclose(sg, grad, rtol=1e-6)
    np.testing.assert_allclose(sq, grad**2, rtol=1e-6)
    np.testing.assert_allclose(var, np.zeros(X.shape), atol=1e-12)


def test_vargrad_of_a_linear_models_gradient_is_zero():
    w = jax.random.normal(jax.random.key(1), X.shape)
    method = lambda z: jax.grad(lambda y: jnp.sum(w * y))(z)
    var = explain.vargrad(method, X, jax.random.key(2), num_samples=8, value_range=1.0)
    np.testing.assert_allclose(var, np.zeros(X.shape), atol=1e-12)  # w ~ 1: rounding only


def test_vargrad_and_smoothgrad_sq_closed_forms():
    # Gradient (x + n)^2 with n ~ N(0, s^2): mean x^2 + s^2, variance 4 x^2 s^2 + 2 s^4,
    # E[(x + n)^4] = x^4 + 6 x^2 s^2 + 3 s^4.
    s = 0.2
    options = dict(num_samples=8192, noise_level=s, value_range=1.0, batch_size=1024)
    run = jax.jit(
        lambda x, k, kind: explain.noise_tunnel(gradient_of_cube, x, k, kind=kind, **options),
        static_argnames="kind",
    )
    var = run(X, jax.random.key(3), "vargrad")
    sq = run(X, jax.random.key(4), "smoothgrad_sq")
    np.testing.assert_allclose(var, 4 * X**2 * s**2 + 2 * s**4, atol=0.01)  # ~4 std
    np.testing.assert_allclose(sq, X**4 + 6 * X**2 * s**2 + 3 * s**4, atol=0.05)  # ~5 std


def test_smoothgrad_kind_is_saliency_smoothgrad():
    key = jax.random.key(5)
    ours = explain.noise_tunnel(gradient_of_cube, X, key, num_samples=6, value_range=1.0)
    theirs = explain.smoothgrad(gradient_of_cube, X, key, num_samples=6, value_range=1.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def class_gradient(image, target, scale):
    return jax.grad(lambda z: scale * jnp.sum(z**2) * (target + 1.0))(image)


def test_batch_matches_per_image_calls():
    images = jax.random.uniform(jax.random.key(6), (3, 2, 2, 3))
    targets = jnp.array([0, 2, 1])
    key = jax.random.key(7)
    options = dict(kind="vargrad", num_samples=4, noise_level=0.1, value_range=1.0)
    batch = explain.noise_tunnel_batch(class_gradient, images, key, targets, args=(0.5,), **options)
    keys = jax.random.split(key, 3)
    for i in range(3):
        one = explain.noise_tunnel(
            lambda z, i=i: class_gradient(z, targets[i], 0.5), images[i], keys[i], **options
        )
        np.testing.assert_allclose(batch[i], one, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="Unknown noise tunnel"):
        explain.noise_tunnel_batch(class_gradient, images, key, targets, kind="mean", args=(1.0,))


def keyed_map(images, targets, scale, keys):
    """A batched method whose map is noise from each image's key plus its own gradient."""
    noise = jax.vmap(lambda k: jax.random.normal(k, images.shape[1:]))(keys)
    grads = jax.vmap(class_gradient, in_axes=(0, 0, None))(images, targets, scale)
    return grads + noise


def test_batched_tunnel_is_the_per_image_tunnel_with_each_images_key():
    """Copies go through a batched method as rows of its batch, each with its image's key:
    the same maps as the per-image tunnel around ``method(image)`` with that key fixed (so
    the key-dependent part cancels in VarGrad); 2 of the 5 copies per call (a loop over
    groups, the last one padded) here, all at once in the tests above."""
    images = jax.random.uniform(jax.random.key(8), (3, 2, 2, 3))
    targets = jnp.array([1, 0, 2])
    noise_keys = jax.random.split(jax.random.key(9), 3)
    method_keys = jax.random.split(jax.random.key(10), 3)
    options = dict(kind="vargrad", num_samples=5, noise_level=0.1, value_range=1.0)
    batched = explain.batched_noise_tunnel(
        keyed_map,
        images,
        noise_keys,
        targets,
        together=2,
        args=(0.5,),
        row_args=(method_keys,),
        **options,
    )

    @jax.jit
    def per_image(image, target, noise_key, method_key):
        one = lambda z: keyed_map(z[None], target[None], 0.5, method_key[None])[0]
        return explain.noise_tunnel(one, image, noise_key, **options)

    for i in range(3):
        expected = per_image(images[i], targets[i], noise_keys[i], method_keys[i])
        np.testing.assert_allclose(batched[i], expected, rtol=1e-5, atol=1e-7)
