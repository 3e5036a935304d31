"""Input gradient, SmoothGrad and Grad-CAM."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import explain
from tests.explain import tiny_models

SIZE = 16


def test_input_gradient_and_batched_form():
    w = jax.random.normal(jax.random.key(0), (3, SIZE, SIZE, 3))
    f = lambda x, t: jnp.sum(w[t] * x**2)
    images = jax.random.uniform(jax.random.key(1), (2, SIZE, SIZE, 3))
    targets = jnp.array([2, 0])
    grads = explain.input_gradients(f, images, targets)
    np.testing.assert_allclose(grads, 2 * w[targets] * images, rtol=1e-5)
    np.testing.assert_allclose(
        explain.input_gradient(f, images[1], (0,)), 2 * w[0] * images[1], rtol=1e-5
    )


def test_smoothgrad_known_expectation():
    # f = sum(x^3) / 3 has gradient x^2; with Gaussian noise of std s, E[(x + n)^2] = x^2 + s^2.
    f = lambda x: jnp.sum(x**3) / 3.0
    x = jnp.linspace(-1.0, 1.0, 12).reshape(2, 2, 3)
    sigma = 0.2
    method = lambda z: explain.input_gradient(f, z)
    smooth = jax.jit(
        lambda x, k: explain.smoothgrad(
            method, x, k, num_samples=4096, noise_level=sigma, value_range=1.0, batch_size=512
        )
    )(x, jax.random.key(0))
    np.testing.assert_allclose(smooth, x**2 + sigma**2, atol=0.02)
    # Over integrated gradients: a linear f stays exact under noise with a black baseline.
    v = jax.random.normal(jax.random.key(1), x.shape)
    ig = lambda z: explain.integrated_gradients(lambda y: jnp.sum(v * y), z, 0.0, steps=4)[0]
    smooth_ig = explain.smoothgrad(ig, x, jax.random.key(2), num_samples=8, value_range=1.0)
    noisy_mean = x + 0.15 * jax.random.normal(jax.random.key(2), (8, *x.shape)).mean(0)
    np.testing.assert_allclose(smooth_ig, v * noisy_mean, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def cnn():
    model = tiny_models.TinyCNN(features=5, batch_norm=True)
    variables = model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False)
    return model, variables  # keeps init's batch-1 'perturbations': gradcam must drop them


def test_gradcam_matches_hand_computation(cnn):
    model, variables = cnn
    images = jax.random.uniform(jax.random.key(3), (3, SIZE, SIZE, 3), jnp.float32, 0, 255)
    targets = jnp.array([0, 1, 2])
    cams = explain.gradcam(
        model, variables, images, targets, preprocess=tiny_models.normalize, upsample=False
    )
    # By hand: logits = Dense(mean_ij relu(A)), so d logit_t / d A_ijk = [A_ijk > 0] W_kt / (hw).
    inference = explain.without_capture_collections({**variables, "intermediates": {}})
    assert set(variables) == {"params", "batch_stats", "perturbations"}
    assert set(inference) == {"params", "batch_stats"}
    _, state = model.apply(
        inference, tiny_models.normalize(images), train=False, mutable=["intermediates"]
    )
    activation = state["intermediates"]["_Head_0"]["last_conv"][0]  # [B, h, w, k]
    h, w = activation.shape[1:3]
    kernel = variables["params"]["Dense_0"]["kernel"]  # [k, classes]
    grads = (activation > 0) * kernel[:, targets].T[:, None, None, :] / (h * w)
    expected = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", activation, grads.mean(axis=(1, 2))))
    assert cams.shape == (3, h, w)
    np.testing.assert_allclose(cams, expected, rtol=1e-4, atol=1e-6)
    assert float(cams.max()) > 0
    # Upsampled maps have the image size; default target is the predicted class.
    up = explain.gradcam(model, variables, images, preprocess=tiny_models.normalize)
    assert up.shape == (3, SIZE, SIZE)
    assert np.all(np.asarray(up) >= 0)


def test_gradcam_batch_independent(cnn):
    model, variables = cnn
    images = jax.random.uniform(jax.random.key(4), (2, SIZE, SIZE, 3), jnp.float32, 0, 255)
    other = images.at[1].set(0.0)
    a = explain.gradcam(
        model, variables, images, jnp.array([1, 1]), preprocess=tiny_models.normalize
    )
    b = explain.gradcam(
        model, variables, other, jnp.array([1, 1]), preprocess=tiny_models.normalize
    )
    np.testing.assert_array_equal(a[0], b[0])


def test_gradcam_without_last_conv_says_what_to_do():
    class NoContract(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(2)(x.mean(axis=(1, 2)))

    model = NoContract()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="last_conv"):
        explain.gradcam(model, variables, jnp.zeros((1, 4, 4, 3)), jnp.array([0]))


def test_gradcam_on_the_models_wing_rca_model():
    # The contract with cervix_jax.models: 'last_conv' sown and perturbed at the top level.
    from cervix_jax import models

    model = models.create_model("densenet121_rca_tiny", 5)
    variables = models.init_variables(model, jax.random.key(0), 32)
    images = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), jnp.float32, 0, 255)
    targets = jnp.array([3, 1])
    cams = explain.gradcam(
        model, variables, images, targets, preprocess=tiny_models.normalize, upsample=False
    )
    # By hand with the models wing's own helper, one image at a time.
    for i in range(2):
        x = tiny_models.normalize(images[i])[None]
        zeros = models.last_conv_perturbation(model, x.shape)

        def logit(p, x=x, i=i):
            out, state = model.apply(
                {**variables, "perturbations": p}, x, train=False, mutable=["intermediates"]
            )
            return out[0, targets[i]], state["intermediates"]["last_conv"][0][0]

        grads, activation = jax.grad(logit, has_aux=True)(zeros)
        weights = grads["last_conv"][0].mean(axis=(0, 1))
        expected = jax.nn.relu(jnp.einsum("hwk,k->hw", activation, weights))
        np.testing.assert_allclose(cams[i], expected, rtol=1e-4, atol=1e-6)
