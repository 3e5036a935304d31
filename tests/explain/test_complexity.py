"""Complexity of maps (cervix_jax/explain/complexity.py) on hand-computed arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import explain


def test_sparseness_known_values():
    n = 16
    constant = jnp.full((1, 4, 4), 3.0)
    one_hot = jnp.zeros((1, 4, 4)).at[0, 1, 2].set(-5.0)
    # [1, 2, 3, 4]: sum_k (2k - n - 1) a_k / (n sum a) = (-3 - 2 + 3 + 12) / 40; signs ignored.
    ramp = jnp.array([[[-1.0, 2.0], [-3.0, 4.0]]])
    values = explain.sparseness(jnp.concatenate([constant, one_hot]))
    # One-hot: (n - 1) / n, divided by 1 + n * 1e-7 for Quantus' 1e-7 added to every entry.
    np.testing.assert_allclose(values, [0.0, (n - 1) / n / (1 + n * 1e-7)], rtol=1e-6, atol=1e-7)
    assert float(explain.sparseness(ramp)[0]) == pytest.approx(0.25, abs=1e-6)
    # Gini as mean absolute difference / (2 mean): a second formula for a random map.
    a = np.abs(np.asarray(jax.random.normal(jax.random.key(0), (50,)), np.float64))
    gini = np.abs(a[:, None] - a[None, :]).sum() / (2 * a.size**2 * a.mean())
    assert float(explain.sparseness(jnp.asarray(a)[None])[0]) == pytest.approx(gini, abs=1e-5)
    assert float(explain.sparseness(jnp.zeros((1, 3, 3)))[0]) == pytest.approx(0.0, abs=1e-6)


def test_effective_complexity_counts_entries_above_eps_of_max():
    maps = jnp.array([[0.0, 1e-6, 0.5, -1.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(explain.effective_complexity(maps), [2, 4, 0])
    np.testing.assert_array_equal(explain.effective_complexity(maps, eps=0.6), [1, 4, 0])
    assert explain.effective_complexity(jnp.ones((2, 4, 4, 3))).shape == (2,)


def test_complexity_is_entropy_of_the_normalised_map():
    maps = jnp.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, -7.0, 0.0], [1.0, -1.0, 2.0, 0.0]])
    expected = [np.log(4.0), 0.0, -(2 * 0.25 * np.log(0.25) + 0.5 * np.log(0.5))]
    np.testing.assert_allclose(explain.entropy_complexity(maps), expected, atol=1e-6)
    assert np.isnan(float(explain.entropy_complexity(jnp.zeros((1, 4)))[0]))
