"""Mathematics of integrated gradients (cervix_jax/explain/integrated_gradients.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import explain
from cervix_jax.explain import quadrature
from tests.explain import tiny_models

SIZE = 16


def _image(seed, size=SIZE):
    return jax.random.uniform(jax.random.key(seed), (size, size, 3), jnp.float32, 0.0, 255.0)


W = jax.random.normal(jax.random.key(42), (SIZE, SIZE, 3))


def linear_f(x):
    return jnp.sum(W * x) + 3.0


@pytest.mark.parametrize("method", quadrature.QUADRATURE_RULES)
def test_linear_function_is_exact(method):
    x, baseline = _image(0), _image(1)
    attributions, error = explain.integrated_gradients(
        linear_f, x, baseline, steps=7, method=method
    )
    np.testing.assert_allclose(attributions, W * (x - baseline), rtol=1e-5, atol=1e-4)
    assert abs(float(error)) < 1e-4 * float(jnp.abs(W * (x - baseline)).sum())


@pytest.fixture(scope="module")
def softplus_net():
    model = tiny_models.SoftplusMLP()
    variables = tiny_models.init(model, jax.random.key(1), SIZE)
    variables = jax.tree.map(lambda a: 3.0 * a, variables)  # a curved path
    return explain.class_score_fn(tiny_models.logits_fn(model), "logit"), (0, variables)


@pytest.fixture(scope="module")
def relu_cnn():
    model = tiny_models.TinyCNN(features=8)
    variables = jax.tree.map(lambda a: 3.0 * a, tiny_models.init(model, jax.random.key(1), SIZE))
    return explain.class_score_fn(tiny_models.logits_fn(model), "logit"), (0, variables)


def _relative_error(f, args, x, steps, method, baseline=0.0):
    _, error = explain.integrated_gradients(f, x, baseline, steps=steps, method=method, f_args=args)
    delta = f(x, *args) - f(jnp.broadcast_to(jnp.float32(baseline), x.shape), *args)
    return abs(float(error)) / abs(float(delta))


def test_completeness_error_falls_with_more_steps(softplus_net):
    f, args = softplus_net
    x = _image(3)
    errors = [_relative_error(f, args, x, n, "riemann_left") for n in (8, 32, 128)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[0] / errors[2] > 8  # ~1/n: 16x in exact arithmetic


def test_gauss_legendre_beats_left_riemann_on_smooth_net(softplus_net):
    f, args = softplus_net
    x = _image(4)
    tol = 1e-3

    def steps_needed(method):
        for n in (2, 4, 8, 16, 32, 64, 128, 256):
            if _relative_error(f, args, x, n, method) < tol:
                return n
        return 512

    gl, left = steps_needed("gausslegendre"), steps_needed("riemann_left")
    assert gl <= 16
    assert left >= 8 * gl


def test_relu_cnn_convergence_is_first_order(relu_cnn):
    """Measured (see the module docstring): on a piecewise-linear path no rule is high-order.

    We assert what we measured robustly: left Riemann falls like 1/n, and every correctly
    weighted rule is within 2% at 256 steps. No advantage of Gauss-Legendre is asserted.
    """
    f, args = relu_cnn
    x = _image(5)
    left = [_relative_error(f, args, x, n, "riemann_left") for n in (16, 128)]
    assert 3.0 < left[0] / left[1] < 30.0
    for method in quadrature.QUADRATURE_RULES:
        assert _relative_error(f, args, x, 256, method) < 2e-2


def test_vmapped_equals_python_loop(softplus_net):
    f, args = softplus_net
    x, baseline = _image(6), _image(7)
    steps, method = 9, "gausslegendre"
    attributions, _ = explain.integrated_gradients(
        f, x, baseline, steps=steps, method=method, f_args=args
    )
    alphas, weights = quadrature.points_and_weights(method, steps)
    grad = jax.jit(jax.grad(lambda z: f(z, *args)))
    total = jnp.zeros_like(x)
    for alpha, weight in zip(alphas, weights, strict=True):
        total = total + float(weight) * grad(baseline + float(alpha) * (x - baseline))
    expected = (x - baseline) * total
    np.testing.assert_allclose(
        attributions, expected, rtol=1e-4, atol=1e-6 * float(jnp.abs(expected).max())
    )


@pytest.mark.parametrize("chunk_loop", ["scan", "unrolled"])
@pytest.mark.parametrize("chunk_size", [1, 4, 7])
def test_chunking_does_not_change_result(relu_cnn, chunk_size, chunk_loop):
    f, args = relu_cnn
    x = _image(8)
    full, error_full = explain.integrated_gradients(f, x, 0.0, steps=14, f_args=args)
    chunked, error_chunked = explain.integrated_gradients(
        f, x, 0.0, steps=14, chunk_size=chunk_size, chunk_loop=chunk_loop, f_args=args
    )
    scale = float(jnp.abs(full).max())
    np.testing.assert_allclose(chunked, full, rtol=1e-4, atol=1e-5 * scale)
    assert float(error_chunked) == pytest.approx(float(error_full), abs=1e-5 * scale * x.size)


@pytest.mark.parametrize("steps", [12, 4])  # 3 chunks of 4, or a single chunk
@pytest.mark.parametrize(("chunk_loop", "while_loops"), [("scan", 1), ("unrolled", 0), ("auto", 0)])
def test_chunk_loop_is_a_while_loop_only_when_asked(relu_cnn, steps, chunk_loop, while_loops):
    """'scan' keeps one XLA while loop over the chunks; 'unrolled' (and 'auto' on CPU) none."""
    f, args = relu_cnn
    x = _image(8)
    hlo = explain.lower_integrated_gradients(
        f,
        x,
        0.0,
        steps=steps,
        method="gausslegendre",
        chunk_size=4,
        chunk_loop=chunk_loop,
        f_args=args,
    ).as_text()
    assert hlo.count("stablehlo.while") == while_loops
    with pytest.raises(ValueError, match="chunk_loop='fast'.*'auto', 'scan', 'unrolled'"):
        explain.integrated_gradients(f, x, steps=4, chunk_loop="fast", f_args=args)


def test_batched_equals_per_image(relu_cnn):
    f, (_, variables) = relu_cnn
    images = jnp.stack([_image(10), _image(11), _image(12)])
    baselines = jnp.stack([jnp.zeros((SIZE, SIZE, 3)), _image(13)])  # K = 2 shared baselines
    targets = jnp.array([0, 2, 1])
    result = explain.integrated_gradients_batch(
        f, images, baselines, targets, steps=8, chunk_size=4, f_args=(variables,)
    )
    assert result.attributions.shape == images.shape
    for i in range(3):
        per_baseline = [
            explain.integrated_gradients(
                f, images[i], b, steps=8, chunk_size=4, f_args=(targets[i], variables)
            )
            for b in baselines
        ]
        expected = jnp.mean(jnp.stack([a for a, _ in per_baseline]), axis=0)
        scale = float(jnp.abs(expected).max())
        np.testing.assert_allclose(result.attributions[i], expected, rtol=1e-4, atol=1e-5 * scale)
        mean_error = np.mean([float(e) for _, e in per_baseline])
        assert float(result.completeness_error[i]) == pytest.approx(
            mean_error, abs=1e-4 * scale * 50
        )


def test_batch_independence_in_inference_mode():
    # BatchNorm in eval mode uses running statistics: one image's attributions cannot depend
    # on the other images of the batch (they would in train mode).
    model = tiny_models.TinyCNN(batch_norm=True, dropout_rate=0.5)
    variables = tiny_models.init(model, jax.random.key(2), SIZE)
    variables["batch_stats"] = jax.tree.map(lambda a: a + 0.3, variables["batch_stats"])
    f = explain.class_score_fn(tiny_models.logits_fn(model), "probability")
    a = jnp.stack([_image(20), _image(21), _image(22)])
    b = jnp.stack([_image(20), _image(23) * 0.1, _image(24)])
    targets = jnp.array([1, 0, 2])
    ra = explain.integrated_gradients_batch(f, a, 0.0, targets, steps=6, f_args=(variables,))
    rb = explain.integrated_gradients_batch(f, b, 0.0, targets, steps=6, f_args=(variables,))
    np.testing.assert_array_equal(ra.attributions[0], rb.attributions[0])
    assert not np.allclose(ra.attributions[1], rb.attributions[1])


def test_compiled_once_per_shape():
    traces = []

    def f(x, scale):
        traces.append(1)  # runs only while tracing
        return jnp.sum(jnp.tanh(x / 100.0)) * scale

    for seed in range(3):
        explain.integrated_gradients(f, _image(seed), 0.0, steps=5, f_args=(jnp.float32(seed),))
    n_traces = len(traces)
    explain.integrated_gradients(f, _image(9), 1.0, steps=5, f_args=(jnp.float32(2.0),))
    assert len(traces) == n_traces  # new values, same shapes: no new trace


def test_adaptive_doubles_until_tolerance(softplus_net):
    f, args = softplus_net
    x = _image(30)
    attributions, error, steps = explain.integrated_gradients_adaptive(
        f, x, 0.0, tol=2e-2, start_steps=4, method="riemann_left", f_args=args
    )
    assert steps > 4 and steps & (steps - 1) == 0
    assert _relative_error(f, args, x, steps, "riemann_left") < 2e-2
    assert _relative_error(f, args, x, steps // 2, "riemann_left") >= 2e-2
    reference, _ = explain.integrated_gradients(
        f, x, 0.0, steps=steps, method="riemann_left", f_args=args
    )
    np.testing.assert_allclose(attributions, reference, rtol=1e-6)
    # An absolute tolerance of 2% of |f(x) - f(0)| stops at the same step count.
    delta = abs(float(f(x, *args) - f(jnp.zeros_like(x), *args)))
    _, absolute_error, absolute_steps = explain.integrated_gradients_adaptive(
        f,
        x,
        0.0,
        tol=2e-2 * delta,
        relative=False,
        start_steps=4,
        method="riemann_left",
        f_args=args,
    )
    assert absolute_steps == steps and abs(float(absolute_error)) < 2e-2 * delta


def test_paper_preset_keeps_completeness_in_pixel_space():
    model = tiny_models.SoftplusMLP()
    variables = tiny_models.init(model, jax.random.key(3), SIZE)
    logits_fn = tiny_models.logits_fn(model)
    images = jnp.stack([_image(40), _image(41)])
    result = explain.paper_integrated_gradients(
        logits_fn, images, jax.random.key(0), f_args=(variables,)
    )
    assert explain.PAPER_PRESET["method"] == "riemann_left"
    assert result.attributions.shape == images.shape
    relative = np.abs(result.completeness_error) / np.abs(result.score_difference)
    # Left Riemann with 50 steps: ~1/50 relative error, not the factor ~1/58 (1/std in pixels)
    # that mixing pixel differences with normalised-space gradients would cause.
    assert np.all(relative < 0.1)
    probabilities = jax.nn.softmax(jax.vmap(lambda im: logits_fn(im, variables))(images))
    predicted = jnp.argmax(probabilities, axis=-1)
    # The attributions explain the predicted class's probability: they sum (up to the
    # completeness error) to p(x) - mean_k p(b_k), which is below p(x).
    total = result.attributions.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(
        total - result.completeness_error, result.score_difference, rtol=1e-4
    )
    assert np.all(result.score_difference < probabilities[jnp.arange(2), predicted])


def test_uint8_images_are_attributed_in_float():
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3)), jnp.uint8)
    baseline = jnp.full((SIZE, SIZE, 3), 0.5)
    attributions, _ = explain.integrated_gradients(linear_f, x, baseline, steps=3)
    np.testing.assert_allclose(attributions, W * (x - 0.5), rtol=1e-5, atol=1e-4)
    batched = explain.integrated_gradients_batch(linear_f, x[None], baseline, steps=3)
    np.testing.assert_allclose(batched.attributions[0], W * (x - 0.5), rtol=1e-5, atol=1e-4)


def test_batch_adaptive_reaches_tolerance_for_every_image(softplus_net):
    f, (target, variables) = softplus_net
    images = jnp.stack([_image(50), _image(51)])
    result, steps = explain.integrated_gradients_batch_adaptive(
        lambda x, v: f(x, target, v),
        images,
        0.0,
        tol=2e-2,
        start_steps=4,
        method="riemann_left",
        f_args=(variables,),
    )
    relative = np.abs(result.completeness_error) / np.abs(result.score_difference)
    assert steps > 4 and np.all(relative < 2e-2)


def test_unrolled_chunks_keep_memory_bounded_by_the_chunk_size():
    """8x the steps (2 -> 16 chunks of 4): temporaries grow < 1.6x with our compiler options;
    XLA CPU's default scheduler (the control) keeps every chunk's buffers (> 2x)."""
    model = tiny_models.TinyCNN(features=8)
    variables = tiny_models.init(model, jax.random.key(1), 64)
    f = explain.class_score_fn(tiny_models.logits_fn(model), "logit")
    x = jax.random.uniform(jax.random.key(0), (64, 64, 3), maxval=255.0)

    def temp_bytes(memory_optimized, steps):
        lowered = explain.lower_integrated_gradients(
            f,
            x,
            jnp.zeros_like(x),
            steps=steps,
            method="gausslegendre",
            chunk_size=4,
            chunk_loop="unrolled",
            f_args=(0, variables),
            memory_optimized=memory_optimized,
        )
        return lowered.compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(True, 64) < 1.6 * temp_bytes(True, 8)
    assert temp_bytes(False, 64) > 2.0 * temp_bytes(False, 8)
