"""Similarity of maps (cervix_jax/explain/similarity.py): SSIM against an independent
reference, correlations on maps with known relations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from cervix_jax import explain


def _reference_ssim(a, b):
    """SSIM as skimage computes it (gaussian_weights, population moments), with scipy."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    blur = lambda x: scipy.ndimage.gaussian_filter(x, 1.5, truncate=3.5)  # 11 taps
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s[5:-5, 5:-5].mean()


def test_ssim_known_answers():
    a = jax.random.uniform(jax.random.key(0), (20, 17))
    b = jnp.clip(a + 0.2 * jax.random.normal(jax.random.key(1), a.shape), 0, 1)
    assert float(explain.ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(explain.ssim(a, b)) == pytest.approx(_reference_ssim(a, b), abs=1e-5)
    assert float(explain.ssim(a, b)) < 0.9
    # Two constant images: only the luminance term is left, (2xy + C1) / (x^2 + y^2 + C1).
    x, y, c1 = 0.3, 0.7, 0.01**2
    value = explain.ssim(jnp.full((12, 12), x), jnp.full((12, 12), y))
    assert float(value) == pytest.approx((2 * x * y + c1) / (x * x + y * y + c1), rel=1e-5)
    with pytest.raises(ValueError, match="at least 11"):
        explain.ssim(jnp.zeros((8, 8)), jnp.zeros((8, 8)))


def test_map_similarity_measures():
    m = jax.random.normal(jax.random.key(2), (12, 12, 3))
    same_ranks = 2.0 * m + 1.0  # channel sums keep their order
    np.testing.assert_allclose(
        [
            float(explain.map_similarity(m, same_ranks, "spearman")),
            float(explain.map_similarity(m, -m, "spearman")),
            float(explain.map_similarity(m, -m, "spearman_abs")),
            float(explain.map_similarity(m, -3.0 * m, "pearson_abs")),
            float(explain.map_similarity(m, -3.0 * m, "ssim")),
        ],
        [1.0, -1.0, 1.0, 1.0, 1.0],
        atol=1e-5,
    )
    other = jax.random.normal(jax.random.key(3), (12, 12, 3))
    for measure in explain.SIMILARITY_MEASURES:
        assert abs(float(explain.map_similarity(m, other, measure))) < 0.5, measure
    batch = explain.map_similarities(jnp.stack([m, m]), jnp.stack([m, other]))
    assert set(batch) == set(explain.SIMILARITY_MEASURES)
    np.testing.assert_allclose(batch["ssim"][0], 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="Unknown similarity"):
        explain.map_similarity(m, m, "hog")
