"""Faithfulness (cervix_jax/explain/faithfulness.py): ROAD's imputation against a direct
sparse solve, deletion/insertion with fills against scores.deletion_insertion, infidelity
closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from cervix_jax import explain

EXACT = explain.Fill("linear", noise_std=0.0, iterations=200)


def _road_direct(image, removed):
    """ROAD's system written out pixel by pixel and solved by a sparse LU (reference)."""
    h, w, c = image.shape
    where = np.argwhere(removed)
    index = -np.ones((h, w), int)
    index[removed] = np.arange(len(where))
    a = scipy.sparse.lil_matrix((len(where), len(where)))
    b = np.zeros((len(where), c))
    for n, (i, j) in enumerate(where):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                ii, jj = i + di, j + dj
                if (di, dj) == (0, 0) or not (0 <= ii < h and 0 <= jj < w):
                    continue
                weight = 1 / 6 if di == 0 or dj == 0 else 1 / 12
                a[n, n] += weight
                if removed[ii, jj]:
                    a[n, index[ii, jj]] -= weight
                else:
                    b[n] += weight * image[ii, jj]
    out = image.astype(np.float64)
    out[removed] = scipy.sparse.linalg.spsolve(a.tocsc(), b).reshape(len(where), c)
    return out


def test_linear_ramp_is_reconstructed_exactly():
    yy, xx = np.mgrid[:12, :12].astype(np.float32)
    ramp = np.stack([3.0 * yy + 5.0 * xx + 7.0, 100.0 - 2.0 * xx, 4.0 * yy], axis=-1)
    removed = np.zeros((12, 12), bool)
    removed[3:8, 2:9] = True  # an interior block
    removed[9, 9] = removed[1, 5] = True  # and single pixels
    out = explain.impute(jnp.asarray(ramp), jnp.asarray(removed), EXACT)
    np.testing.assert_allclose(out, ramp, atol=1e-3)
    # Black fill is far from the ramp there: the known answer is not reached by accident.
    black = explain.impute(jnp.asarray(ramp), jnp.asarray(removed), explain.Fill("constant"))
    assert float(jnp.abs(black - ramp).max()) > 10


def test_linear_imputation_matches_a_direct_sparse_solve():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (14, 13, 3)).astype(np.float32)
    removed = rng.uniform(size=(14, 13)) < 0.5  # border pixels too
    removed[0, :6] = True
    reference = _road_direct(image, removed)
    out = explain.impute(jnp.asarray(image), jnp.asarray(removed), EXACT)
    np.testing.assert_allclose(out, reference, atol=2e-3)
    np.testing.assert_array_equal(np.asarray(out)[~removed], image[~removed])


def test_noise_only_on_removed_pixels_and_everything_removed():
    image = jax.random.uniform(jax.random.key(0), (16, 16, 3), jnp.float32, 0, 255)
    removed = jnp.zeros((16, 16), bool).at[4:12, 4:12].set(True)
    fill = explain.Fill("linear", noise_std=3.0, iterations=100)
    noisy = explain.impute(image, removed, fill, jax.random.key(1))
    clean = explain.impute(image, removed, explain.Fill("linear", noise_std=0.0, iterations=100))
    np.testing.assert_array_equal(noisy[~removed], image[~removed])
    noise = np.asarray(noisy - clean)[np.asarray(removed)]
    assert np.std(noise) == pytest.approx(3.0, rel=0.15)
    # No kept pixel at all: the mean of nothing is 0 (black).
    everything = explain.impute(image, jnp.ones((16, 16), bool), EXACT)
    np.testing.assert_allclose(everything, np.zeros(image.shape), atol=1e-6)
    with pytest.raises(ValueError, match="PRNG key"):
        explain.impute(image, removed, fill)
    with pytest.raises(ValueError, match="Unknown fill"):
        explain.Fill("inpaint")


def mean_score(image, target):
    return jnp.mean(image[..., target]) / 255.0


def test_constant_and_blur_fills_reproduce_scores_deletion_insertion():
    images = jax.random.uniform(jax.random.key(2), (2, 8, 8, 3), jnp.float32, 0, 255)
    heat = jax.random.normal(jax.random.key(3), (2, 8, 8))
    targets = jnp.array([0, 2])
    old = explain.deletion_insertion(mean_score, images, heat, targets, steps=8, blur_sigma=2.0)
    new = explain.deletion_insertion_imputed(
        mean_score,
        images,
        heat,
        targets,
        fill=explain.Fill("constant", value=0.0),
        insertion_fill=explain.Fill("blur", sigma=2.0),
        steps=8,
    )
    for name in ("deletion_curve", "insertion_curve", "deletion_auc", "insertion_auc"):
        np.testing.assert_allclose(new[name], old[name], rtol=1e-5, atol=1e-6)
    assert explain.Fill("constant", value=0.0).record() == {"kind": "constant", "value": 0.0}
    assert explain.Fill("blur", sigma=2.0).record() == {"kind": "blur", "sigma": 2.0}


def test_linear_fill_curves_on_a_ramp():
    # On a linear ramp the imputation is exact wherever a removed pixel has kept neighbours
    # on all sides, so deleting the interior first changes nothing until the border goes.
    yy, xx = np.mgrid[:8, :8].astype(np.float32)
    ramp = jnp.asarray(np.stack([10.0 * yy + 20.0 * xx + 5.0] * 3, axis=-1))[None]
    interior = np.zeros((8, 8), np.float32)
    interior[2:6, 2:6] = 1.0  # 16 of 64 pixels: the first 4 of 16 steps remove only these
    result = explain.deletion_insertion_imputed(
        mean_score, ramp, jnp.asarray(interior)[None], jnp.array([0]), fill=EXACT, steps=16
    )
    curve = np.asarray(result["deletion_curve"][0])
    np.testing.assert_allclose(curve[:5], curve[0], rtol=1e-5)
    assert EXACT.record() == {"kind": "linear", "noise_std": 0.0, "iterations": 200}
    assert abs(curve[-1]) < 1e-6  # everything removed: black
    with pytest.raises(ValueError, match="PRNG key"):
        explain.deletion_insertion_imputed(mean_score, ramp, interior[None], jnp.array([0]))


W = jax.random.normal(jax.random.key(4), (16, 16, 3))


def linear_model(image):
    return jnp.sum(W * image) + 2.0


def test_infidelity_of_exact_explanations_of_a_linear_model_is_zero():
    images = jax.random.uniform(jax.random.key(5), (3, 16, 16, 3), jnp.float32, 0, 255)
    ig = explain.integrated_gradients_batch(linear_model, images, 0.0, steps=4).attributions
    key = jax.random.key(6)
    scale = float(jnp.sum(W * W)) * 2.55**2  # E[(w . I)^2]: what a zero map would score
    global_ = explain.infidelity(linear_model, images, ig, key, multiply_by_inputs=True)
    local = explain.infidelity(linear_model, images, jnp.broadcast_to(W, images.shape), key)
    np.testing.assert_allclose(global_, 0.0, atol=1e-6 * scale)
    np.testing.assert_allclose(local, 0.0, atol=1e-6 * scale)
    # The global map read as a local one is wrong, and scores of the order of the scale.
    wrong = explain.infidelity(linear_model, images, ig, key, num_samples=64)
    assert float(wrong.min()) > 0.01 * scale


def test_infidelity_closed_form_and_normalize():
    image = jax.random.uniform(jax.random.key(7), (1, 16, 16, 3), jnp.float32, 0, 255)
    bump = jax.random.normal(jax.random.key(8), (16, 16, 3))
    perturb = lambda key, x: x - bump  # one fixed perturbation I = bump
    doubled = 2.0 * jnp.broadcast_to(W, image.shape)
    options = dict(perturb_fn=perturb, num_samples=3)
    value = explain.infidelity(linear_model, image, doubled, jax.random.key(9), **options)
    # (I . 2w - (f(x) - f(x - I)))^2 = (I . w)^2
    assert float(value[0]) == pytest.approx(float(jnp.sum(W * bump)) ** 2, rel=1e-4)
    rescaled = explain.infidelity(
        linear_model, image, doubled, jax.random.key(9), normalize=True, **options
    )
    assert abs(float(rescaled[0])) < 1e-6 * float(value[0])  # beta = 1/2 undoes the scale
