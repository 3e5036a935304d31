"""Attribution metrics on hand-made maps with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from cervix_jax import explain
from cervix_jax.explain import scores


def _mask(size=8, top=2, bottom=6, left=2, right=6):
    m = np.zeros((size, size), np.uint8)
    m[top:bottom, left:right] = 1
    return jnp.asarray(m)


def test_to_heatmap_keeps_positive_part_and_averages_channels():
    a = jnp.stack([jnp.full((2, 2), 3.0), jnp.full((2, 2), -6.0), jnp.full((2, 2), 0.0)], -1)
    np.testing.assert_allclose(explain.to_heatmap(a), np.full((2, 2), 1.0))
    np.testing.assert_allclose(explain.to_heatmap(-jnp.ones((2, 2))), np.zeros((2, 2)))


def test_localization_ratio_known_answers():
    mask = _mask()  # 16 of 64 pixels: area share 1/4
    inside = jnp.where(mask[..., None] > 0, 2.0, -1.0) * jnp.ones((8, 8, 3))
    assert float(explain.localization_ratio(inside, mask)) == pytest.approx(4.0)
    assert float(explain.localization_ratio(jnp.ones((8, 8)), mask)) == pytest.approx(1.0)
    assert float(explain.localization_ratio(1.0 - mask, mask)) == pytest.approx(0.0)
    half = jnp.where(mask > 0, 1.0, 1.0 / 3.0)  # mass 16 inside, 16 outside
    assert float(explain.localization_ratio(half, mask)) == pytest.approx(2.0)
    assert np.isnan(float(explain.localization_ratio(jnp.zeros((8, 8)), mask)))
    assert np.isnan(float(explain.localization_ratio(jnp.ones((8, 8)), jnp.zeros((8, 8)))))


def test_pointing_games():
    mask = _mask()
    heat = jnp.zeros((8, 8)).at[3, 3].set(5.0).at[0, 0].set(1.0)
    assert float(explain.pointing_game(heat, mask)) == 1.0
    assert float(explain.pointing_game(heat.at[0, 0].set(9.0), mask)) == 0.0
    assert float(explain.energy_pointing_game(heat, mask)) == pytest.approx(5.0 / 6.0)
    batch = explain.localization_metrics(
        jnp.stack([heat, jnp.ones((8, 8))]), jnp.stack([mask, mask]), jnp.stack([mask, 1 - mask])
    )
    np.testing.assert_allclose(batch["localization_cells"], [4 * 5 / 6, 1.0], rtol=1e-6)
    np.testing.assert_allclose(batch["localization_nuclei"], [4 * 5 / 6, 1.0], rtol=1e-6)
    np.testing.assert_allclose(batch["pointing_game"], [5 / 6, 0.25], rtol=1e-6)


def test_completeness_relative_error():
    np.testing.assert_allclose(
        explain.completeness_relative_error(jnp.array([0.1, -0.2]), jnp.array([-1.0, 0.5])),
        [0.1, 0.4],
    )


def test_deletion_and_insertion_auc_known_answers():
    # One bright pixel carries the whole score f = sum(x) / 255; 16 pixels, one per step.
    image = jnp.zeros((4, 4, 1)).at[1, 2, 0].set(255.0)
    f = lambda x: jnp.sum(x) / 255.0
    good = jnp.zeros((4, 4)).at[1, 2].set(1.0) + jnp.arange(16.0).reshape(4, 4) * 1e-3
    bad = -good
    out = explain.deletion_insertion(
        f,
        jnp.stack([image, image]),
        jnp.stack([good, bad]),
        steps=16,
        insertion_baseline=jnp.zeros((4, 4, 1)),
        batch_size=5,
    )
    assert out["deletion_curve"].shape == (2, 17)
    np.testing.assert_allclose(out["deletion_curve"][0], [1.0] + [0.0] * 16, atol=1e-6)
    np.testing.assert_allclose(out["deletion_auc"], [1 / 32, 15.5 / 16], rtol=1e-5)
    np.testing.assert_allclose(out["insertion_auc"], [1 - 1 / 32, 0.5 / 16], rtol=1e-5)


def test_deletion_with_targets_and_blurred_start():
    w = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    f = lambda x, t: jax.nn.sigmoid(jnp.sum(w[t] * x) / 100.0)
    images = jax.random.uniform(jax.random.key(1), (2, 6, 6, 3), jnp.float32, 0, 255)
    heat = jax.random.uniform(jax.random.key(2), (2, 6, 6))
    out = explain.deletion_insertion(f, images, heat, jnp.array([0, 1]), steps=4)
    # The first deletion point is the intact image, the last the black image; insertion ends
    # at the intact image.
    intact = jnp.stack([f(images[0], 0), f(images[1], 1)])
    np.testing.assert_allclose(out["deletion_curve"][:, 0], intact, rtol=1e-5)
    np.testing.assert_allclose(out["insertion_curve"][:, -1], intact, rtol=1e-5)
    np.testing.assert_allclose(out["deletion_curve"][:, -1], [f(0 * images[0], 0)] * 2, rtol=1e-5)
    assert np.all((out["deletion_auc"] >= 0) & (out["deletion_auc"] <= 1))


def test_spearman_and_sanity_check():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(6, 7)).astype(np.float32)  # many ties
    b = a + rng.normal(size=a.shape)
    assert float(scores.spearman(a, b)) == pytest.approx(
        scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-5
    )
    assert float(scores.spearman(a, a)) == pytest.approx(1.0)
    assert float(scores.spearman(a, -a)) == pytest.approx(-1.0)
    maps = jnp.asarray(rng.normal(size=(3, 5, 5)))
    np.testing.assert_allclose(explain.sanity_check(maps, -maps), [1.0] * 3, rtol=1e-5)
    np.testing.assert_allclose(
        explain.sanity_check(maps, -maps, absolute=False), [-1.0] * 3, rtol=1e-5
    )


def test_deletion_order_keeps_the_sign_of_attributions():
    # Two bright pixels; the one with negative attribution must be deleted last, not in
    # raster order among the zero-attribution pixels.
    image = jnp.zeros((4, 4, 1)).at[0, 1, 0].set(255.0).at[3, 3, 0].set(255.0)
    attributions = jnp.zeros((4, 4, 1)).at[3, 3, 0].set(1.0).at[0, 1, 0].set(-1.0)
    out = explain.deletion_insertion(
        lambda x: jnp.sum(x) / 510.0, image[None], attributions[None], steps=16
    )
    np.testing.assert_allclose(out["deletion_curve"][0], [1.0] + [0.5] * 15 + [0.0], atol=1e-6)
