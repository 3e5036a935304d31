"""Quadrature points and weights (cervix_jax/explain/quadrature.py)."""

import numpy as np
import pytest

from cervix_jax.explain import quadrature


@pytest.mark.parametrize("method", quadrature.QUADRATURE_RULES)
@pytest.mark.parametrize("steps", [2, 3, 7, 50])
def test_weights_sum_to_one_and_points_in_unit_interval(method, steps):
    alphas, weights = quadrature.points_and_weights(method, steps)
    assert alphas.shape == weights.shape == (steps,)
    assert np.isclose(weights.sum(), 1.0, atol=1e-14)
    assert np.all(weights > 0)
    assert np.all((alphas >= 0) & (alphas <= 1))
    assert np.all(np.diff(alphas) > 0)


def test_riemann_points():
    np.testing.assert_allclose(
        quadrature.points_and_weights("riemann_left", 4)[0], [0, 0.25, 0.5, 0.75]
    )
    np.testing.assert_allclose(
        quadrature.points_and_weights("riemann_right", 4)[0], [0.25, 0.5, 0.75, 1]
    )
    np.testing.assert_allclose(
        quadrature.points_and_weights("riemann_middle", 4)[0], [0.125, 0.375, 0.625, 0.875]
    )
    alphas, weights = quadrature.points_and_weights("riemann_trapezoid", 5)
    np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])


def _integrate(method, steps, g):
    alphas, weights = quadrature.points_and_weights(method, steps)
    return float(np.sum(weights * g(alphas)))


@pytest.mark.parametrize("steps", [1, 2, 5, 10])
def test_gauss_legendre_exact_up_to_degree_2n_minus_1(steps):
    for degree in range(2 * steps):
        assert _integrate("gausslegendre", steps, lambda a, d=degree: a**d) == pytest.approx(
            1.0 / (degree + 1), rel=1e-12
        )
    # ... and not beyond (the error of degree 2n is ~1e-12 at n = 10: only check small n).
    if steps <= 5:
        degree = 2 * steps
        error = _integrate("gausslegendre", steps, lambda a: a**degree) - 1 / (degree + 1)
        assert abs(error) > 1e-8


def test_orders_of_riemann_rules():
    # Left and right sums of alpha have the known error -+1/(2n); middle and trapezoid are exact
    # on linear functions; our trapezoid is exact on constants (captum's sums to 1 - 1/n).
    n = 10
    assert _integrate("riemann_left", n, lambda a: a) == pytest.approx(0.5 - 1 / (2 * n))
    assert _integrate("riemann_right", n, lambda a: a) == pytest.approx(0.5 + 1 / (2 * n))
    for method in ("riemann_middle", "riemann_trapezoid"):
        assert _integrate(method, n, lambda a: 3 * a + 1) == pytest.approx(2.5, rel=1e-12)
        assert _integrate(method, n, lambda a: a**2) != pytest.approx(1 / 3, rel=1e-6)
    # Second order: the error on a^2 shrinks 4x when n doubles.
    for method in ("riemann_middle", "riemann_trapezoid"):
        e1 = abs(_integrate(method, 20, lambda a: a**2) - 1 / 3)
        e2 = abs(_integrate(method, 40, lambda a: a**2) - 1 / 3)
        assert e1 / e2 == pytest.approx(4.0, rel=0.1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown integration method"):
        quadrature.points_and_weights("simpson", 10)
    with pytest.raises(ValueError, match="positive integer"):
        quadrature.points_and_weights("riemann_left", 0)
    with pytest.raises(ValueError, match="steps >= 2"):
        quadrature.points_and_weights("riemann_trapezoid", 1)
