"""Baselines (pixel space) for integrated gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from cervix_jax import explain
from cervix_jax.explain import baselines


def test_blurred_matches_scipy_gaussian_filter():
    x = np.random.default_rng(0).uniform(0, 255, (20, 17, 3)).astype(np.float32)
    expected = np.stack(
        [
            scipy.ndimage.gaussian_filter(x[..., c], 2.0, mode="nearest", truncate=3.0)
            for c in range(3)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(explain.blurred(x, 2.0)[0], expected, atol=1e-3)


def test_make_baselines_shapes_and_spaces():
    images = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3), jnp.float32, 0, 255)
    black = explain.make_baselines("black", images)
    assert black.shape == (2, 1, 8, 8, 3) and float(jnp.abs(black).max()) == 0.0
    uniform = explain.make_baselines("uniform", images, jax.random.key(1), num=10)
    assert uniform.shape == (2, 10, 8, 8, 3)
    assert 0.0 <= float(uniform.min()) and float(uniform.max()) <= 255.0
    assert float(uniform.mean()) == pytest.approx(127.5, abs=5.0)
    assert not np.allclose(uniform[0], uniform[1])  # independent draws per image
    assert explain.make_baselines("blurred", images).shape == (2, 1, 8, 8, 3)
    given = explain.make_baselines(jnp.full((8, 8, 3), 7.0), images)
    assert given.shape == (2, 1, 8, 8, 3) and float(given.min()) == 7.0
    # Black in normalised space is -mean / std, not zero.
    np.testing.assert_allclose(
        explain.to_normalized_space(jnp.zeros(3)), -baselines.IMAGENET_MEAN / baselines.IMAGENET_STD
    )
    with pytest.raises(ValueError, match="PRNG key"):
        explain.make_baselines("uniform", images)
    with pytest.raises(ValueError, match="Unknown baseline"):
        explain.make_baselines("grey", images)
