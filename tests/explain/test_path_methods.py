"""Blur IG and Guided IG (cervix_jax/explain/path_methods.py): completeness, closed forms for
linear models, the straight-line limit, and Guided IG against a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import explain
from tests.explain import tiny_models

SIZE = 16
W = jax.random.normal(jax.random.key(42), (SIZE, SIZE, 3))


def linear_f(x, target):
    return jnp.sum((target + 1.0) * W * x) + 3.0


@pytest.fixture(scope="module")
def softplus_net():
    model = tiny_models.SoftplusMLP()
    variables = tiny_models.init(model, jax.random.key(1), SIZE)
    variables = jax.tree.map(lambda a: 3.0 * a, variables)  # a curved path
    return explain.class_score_fn(tiny_models.logits_fn(model), "logit"), (variables,)


def _images(seed, n=2):
    return jax.random.uniform(jax.random.key(seed), (n, SIZE, SIZE, 3), jnp.float32, 0, 255)


def test_gaussian_blur_matches_the_baseline_blur_and_vanishes_at_zero_sigma():
    x = _images(0, 1)[0]
    np.testing.assert_allclose(
        explain.gaussian_blur(x, 2.0, 6), explain.blurred(x, 2.0)[0], rtol=1e-5, atol=1e-3
    )
    np.testing.assert_allclose(explain.gaussian_blur(x, 0.0, 6), x, rtol=1e-6)
    np.testing.assert_allclose(
        explain.blur_path_start(x[None], 3.0)[0], explain.gaussian_blur(x, 3.0, 9), rtol=1e-6
    )


def test_blur_ig_completeness_on_a_smooth_net(softplus_net):
    f, args = softplus_net
    images, targets = _images(1), jnp.array([0, 2])
    relative = []
    for steps in (8, 64):
        result = explain.blur_integrated_gradients(
            f, images, targets, max_sigma=4.0, steps=steps, chunk_size=16, f_args=args
        )
        relative.append(np.abs(result.completeness_error / result.score_difference))
    start = explain.blur_path_start(images, 4.0)
    delta = jax.vmap(lambda x, b, t: f(x, t, *args) - f(b, t, *args))(images, start, targets)
    np.testing.assert_allclose(result.score_difference, delta, rtol=1e-5)
    assert np.all(relative[1] < 1e-3)
    assert np.all(relative[0] > 10 * relative[1])


def test_blur_ig_of_a_linear_model_is_w_times_the_blur_difference():
    images, targets = _images(2), jnp.array([1, 0])
    result = explain.blur_integrated_gradients(
        linear_f, images, targets, max_sigma=3.0, steps=64, chunk_loop="scan", chunk_size=16
    )
    start = explain.blur_path_start(images, 3.0)
    expected = (targets[:, None, None, None] + 1.0) * W * (images - start)
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-3, atol=1e-3)


def test_guided_ig_of_a_linear_model_is_straight_line_ig():
    images, targets = _images(3), jnp.array([0, 1])
    baseline = _images(4, 1)[0]
    result = explain.guided_integrated_gradients(
        linear_f, images, baseline, targets, steps=8, max_distance=0.3
    )
    expected = (targets[:, None, None, None] + 1.0) * W * (images - baseline)
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-4, atol=1e-3)
    assert np.all(np.abs(result.completeness_error) < 1e-3 * np.abs(result.score_difference))


def test_guided_ig_without_deviation_is_left_riemann_ig(softplus_net):
    f, args = softplus_net
    images, targets = _images(5), jnp.array([1, 2])
    guided = explain.guided_integrated_gradients(
        f, images, 0.0, targets, steps=12, max_distance=0.0, f_args=args
    )
    ig = explain.integrated_gradients_batch(
        f, images, 0.0, targets, steps=12, method="riemann_left", f_args=args
    )
    scale = float(jnp.abs(ig.attributions).max())
    np.testing.assert_allclose(guided.attributions, ig.attributions, atol=1e-5 * scale)


def test_guided_ig_completeness_falls_with_steps(softplus_net):
    f, args = softplus_net
    images, targets = _images(6), jnp.array([0, 1])
    errors = []
    for steps in (8, 64):
        result = explain.guided_integrated_gradients(
            f, images, 0.0, targets, steps=steps, f_args=args
        )
        errors.append(np.abs(result.completeness_error / result.score_difference))
    assert np.all(errors[1] < 0.02)
    assert np.all(errors[0] > 3 * errors[1])  # ~1/steps: 8x in exact arithmetic


C = np.random.default_rng(0).uniform(-1.0, 1.0, (4, 4, 3))
D = np.random.default_rng(1).uniform(-1.0, 1.0, (4, 4, 3))


def quadratic(x):
    return jnp.sum(jnp.asarray(C, jnp.float32) * x * x + jnp.asarray(D, jnp.float32) * x)


def _guided_reference(x, baseline, steps, fraction, max_distance):
    """The published algorithm, one feature array at a time, in float64."""
    x, baseline = np.asarray(x, np.float64), np.asarray(baseline, np.float64)
    span = x - baseline
    total = np.abs(span).sum()
    point, attr = baseline.copy(), np.zeros_like(x)
    for step in range(steps):
        grad = 2 * C * point + D
        alpha = (step + 1) / steps
        lo, hi = max(alpha - max_distance, 0.0), min(alpha + max_distance, 1.0)
        low_point, high_point = baseline + span * lo, baseline + span * hi
        target = total * (1 - alpha)
        for _ in range(100):
            before = point.copy()
            where = np.divide(point - baseline, span, out=np.full_like(x, hi), where=span != 0)
            point = np.where(where < lo, low_point, point)
            distance = np.abs(point - x).sum()
            if abs(distance - target) <= 1e-9 * total:
                attr += (point - before) * grad
                break
            g = np.where(point == high_point, np.inf, np.abs(grad))
            chosen = (g <= np.quantile(g, fraction, method="lower")) & np.isfinite(g)
            reach = (np.abs(point - high_point) * chosen).sum()
            gamma = (distance - target) / reach if reach > 0 else np.inf
            if gamma > 1:
                point = np.where(chosen, high_point, point)
            else:
                point = np.where(chosen, point + (high_point - point) * gamma, point)
            attr += (point - before) * grad
            if gamma <= 1:
                break
    return attr


def test_guided_ig_matches_a_float64_reference():
    rng = np.random.default_rng(2)
    x = rng.uniform(0.0, 2.0, (2, 4, 4, 3)).astype(np.float32)
    baseline = rng.uniform(0.0, 0.5, (4, 4, 3)).astype(np.float32)
    result = explain.guided_integrated_gradients(
        quadratic, x, baseline, steps=10, fraction=0.25, max_distance=0.1, step_loop="unrolled"
    )
    for i in range(2):
        expected = _guided_reference(x[i], baseline, 10, 0.25, 0.1)
        np.testing.assert_allclose(result.attributions[i], expected, rtol=1e-4, atol=1e-5)
    # The adaptive path differs from the straight line on this curved model.
    straight = explain.guided_integrated_gradients(
        quadratic, x, baseline, steps=10, max_distance=0.0, step_loop="unrolled"
    )
    assert float(jnp.abs(result.attributions - straight.attributions).max()) > 1e-2
