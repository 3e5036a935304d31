"""Cell-level scores (cervix_jax/explain/cells.py): closed forms and known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from cervix_jax import explain

K = 6  # max_cells in these tests


def _three_cells(size=16):
    """Label maps of three rectangular cells with a nucleus each, and background around."""
    cells = np.zeros((size, size), np.int32)
    nuclei = np.zeros((size, size), np.int32)
    cells[1:7, 1:7], nuclei[3:5, 3:5] = 1, 1
    cells[1:7, 9:15], nuclei[3:5, 11:13] = 2, 2
    cells[9:15, 4:12], nuclei[11:13, 7:9] = 3, 3
    return cells, nuclei


def test_masses_of_the_cells_and_the_background_add_up_to_the_total():
    cells, nuclei = _three_cells()
    a = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    out = explain.cell_metrics(a, np.stack([cells] * 2), np.stack([nuclei] * 2), max_cells=K)
    positive, signed = np.maximum(a, 0).sum(-1), a.sum(-1)
    for b in range(2):
        np.testing.assert_allclose(out["positive_mass"][b].sum(), positive[b].sum(), rtol=1e-5)
        np.testing.assert_allclose(out["signed_mass"][b].sum(), signed[b].sum(), rtol=1e-4)
        for k in range(4):
            np.testing.assert_allclose(
                out["signed_mass"][b, k], signed[b][cells == k].sum(), rtol=1e-4, atol=1e-5
            )
        assert not out["positive_mass"][b, 4:].any()  # labels 4..K do not occur
        shares = [out[f"cell_share_{r}"][b] for r in ("nuclei", "cytoplasm", "background")]
        np.testing.assert_allclose(sum(shares), 1.0, rtol=1e-5)
        np.testing.assert_allclose(
            shares[0], positive[b][nuclei > 0].sum() / positive[b].sum(), rtol=1e-5
        )
    assert list(out["present"][0]) == [False, True, True, True, False, False, False]
    # The positive masses give the same share on cells as the union-mask energy game.
    energy = explain.energy_pointing_game(a[0], (cells > 0).astype(np.float32))
    np.testing.assert_allclose(1.0 - out["cell_share_background"][0], energy, rtol=1e-5)


def test_concentration_pointing_and_the_deciding_cell_in_closed_form():
    cells, nuclei = _three_cells()
    heat = np.zeros((16, 16), np.float32)
    heat[cells == 1] = 1.0 / (cells == 1).sum()  # mass 1 on cell 1
    heat[cells == 2] = 3.0 / (cells == 2).sum()  # mass 3 on cell 2
    heat[cells == 0] = 4.0 / (cells == 0).sum()  # mass 4 on the background
    heat[2, 10] += 0.5  # the maximum, inside cell 2 (mass 3.5)
    out = explain.cell_metrics(heat[None], cells[None], nuclei[None], max_cells=K)
    assert int(out["deciding_cell"][0]) == 2 and int(out["pointing_cell"][0]) == 2
    # The deciding cell is the one with the largest signed mass: positive noise over a large
    # cell whose net effect is negative does not make it decide.
    signed = heat - np.where(cells == 2, 4.0 / (cells == 2).sum(), 0.0)  # cell 2 nets -0.5
    other = explain.cell_metrics(signed[None], cells[None], nuclei[None], max_cells=K)
    assert int(other["deciding_cell"][0]) == 1 and int(other["pointing_cell"][0]) == 2
    assert float(out["cell_pointing_game"][0]) == 1.0
    np.testing.assert_allclose(out["top_cell_share"][0], 3.5 / 4.5, rtol=1e-6)
    np.testing.assert_allclose(out["cell_share_background"][0], 4.0 / 8.5, rtol=1e-6)
    # Gini of (1, 3.5, 0) over 3 cells: sum |xi - xj| / (2 n sum x) * n / (n - 1).
    x = np.array([1.0, 3.5, 0.0])
    gini = np.abs(x[:, None] - x[None]).sum() / (2 * 3 * x.sum()) * 3 / 2
    np.testing.assert_allclose(out["cell_gini"][0], gini, rtol=1e-6)
    one = explain.cell_metrics(
        np.where(cells == 3, 1.0, 0.0)[None], cells[None], nuclei[None], max_cells=K
    )
    assert float(one["cell_gini"][0]) == pytest.approx(1.0) and float(one["top_cell_share"][0]) == 1


def test_images_without_cells_or_mass_give_nan_not_numbers():
    cells, nuclei = _three_cells()
    empty = np.zeros_like(cells)
    a = np.ones((2, 16, 16), np.float32)
    a[1] = -1.0  # no positive mass at all
    out = explain.cell_metrics(a, np.stack([empty, cells]), np.stack([empty, nuclei]), max_cells=K)
    for key in explain.CELL_METRIC_KEYS:
        assert np.isnan(out[key]).all(), key
    assert list(out["deciding_cell"]) == [0, 0] and list(out["pointing_cell"]) == [0, 0]


def test_masked_spearman_is_scipys_over_the_valid_entries():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = rng.integers(0, 4, 9).astype(np.float32)  # ties
        b = rng.normal(size=9).astype(np.float32)
        valid = rng.uniform(size=9) < 0.7
        valid[:3] = True
        got = explain.masked_spearman(a, b, valid)
        expected = scipy.stats.spearmanr(a[valid], b[valid]).statistic
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.isnan(explain.masked_spearman(a, b, np.arange(9) < 2))  # fewer than 3 cells


def test_background_fill_is_the_median_of_the_background():
    cells, _ = _three_cells()
    image = np.random.default_rng(2).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(
        explain.background_fill(image, cells), np.median(image[cells == 0], axis=0), rtol=1e-6
    )
    everywhere = np.ones_like(cells)
    np.testing.assert_allclose(
        explain.background_fill(image, everywhere), np.median(image.reshape(-1, 3), axis=0)
    )


def test_occlusion_in_chunks_equals_one_cell_at_a_time():
    rng = np.random.default_rng(3)
    cells = rng.integers(0, 8, (2, 8, 8)).astype(np.int32)  # labels 0..7, scattered
    cells[1] = np.minimum(cells[1], 2)  # the second image has only cells 1 and 2
    images = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    weights = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
    f = lambda image, target: jnp.tanh((image * weights[target]).sum() / 5e3)
    targets = np.array([0, 1], np.int32)
    out = jax.jit(lambda x, c, t: explain.cell_occlusion(f, x, c, t, max_cells=9, chunk=3))(
        images, cells, targets
    )
    assert out["drop"].shape == (2, 10)
    for b in range(2):
        fill = np.median(images[b][cells[b] == 0], axis=0)
        for k in range(10):
            if k == 0 or not (cells[b] == k).any():
                assert out["drop"][b, k] == 0.0
                continue
            occluded = np.where((cells[b] == k)[..., None], fill, images[b])
            expected = f(images[b], targets[b]) - f(occluded, targets[b])
            np.testing.assert_allclose(out["drop"][b, k], expected, rtol=1e-4, atol=1e-6)


def test_a_score_of_one_cell_gives_that_cell_all_mass_and_the_only_occlusion_drop():
    """Known answer: f reads only the pixels of cell 2, so IG puts all mass there, cell 2
    decides, and removing any other cell changes nothing."""
    cells, nuclei = _three_cells()
    rng = np.random.default_rng(4)
    # A bright slide with darker cells, as in cytology: the background fill changes cell 2.
    images = np.where(
        (cells > 0)[..., None],
        rng.uniform(40, 120, (2, 16, 16, 3)),
        rng.uniform(200, 255, (2, 16, 16, 3)),
    ).astype(np.float32)
    inside = jnp.asarray(cells == 2, jnp.float32)[..., None]

    def f(image, target):  # a dark (stained) cell 2 is evidence; nothing else is read
        return jax.nn.sigmoid(1.0 + 0.1 * target - (image * inside).mean() / 10.0)

    targets = np.array([0, 3], np.int32)
    ig = explain.integrated_gradients_batch(f, images, 255.0, targets, steps=32)
    labels, nucleus_labels = np.stack([cells] * 2), np.stack([nuclei] * 2)
    drops = explain.cell_occlusion(f, images, labels, targets, max_cells=K)["drop"]
    out = explain.cell_metrics(ig.attributions, labels, nucleus_labels, drops, max_cells=K)
    for b in range(2):
        positive = np.asarray(out["positive_mass"][b])
        assert positive[2] > 0 and np.delete(positive, 2).max() == 0.0, positive
        np.testing.assert_allclose(out["signed_mass"][b, 2], ig.score_difference[b], rtol=2e-3)
        assert int(out["deciding_cell"][b]) == 2 and int(out["pointing_cell"][b]) == 2
        assert float(out["top_cell_share"][b]) == 1.0
        assert float(out["cell_gini"][b]) == pytest.approx(1.0, abs=1e-6)
        assert float(out["cell_share_background"][b]) == 0.0
        drop = np.asarray(drops[b])
        assert drop[2] > 0.1 and np.abs(np.delete(drop, 2)).max() < 1e-7, drop
        assert float(out["occlusion_top_agreement"][b]) == 1.0
    print("cell masses", np.asarray(out["positive_mass"]).round(3), "drops", np.asarray(drops))
