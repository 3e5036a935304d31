"""cervix_jax.study.statistics against closed forms and independent computations."""

import math

import numpy as np
import pytest

from cervix_jax import study
from cervix_jax.train import classification_metrics

# Two-sided 95% Student-t critical values from printed tables (df = 1, 2, 4).
T_TABLE = {1: 12.706, 2: 4.303, 4: 2.776}


def _t4_cdf(t: float) -> float:
    """Student-t CDF with 4 degrees of freedom, in closed form."""
    u = 1.0 + t * t / 4.0
    return 0.5 + 0.375 * (t / math.sqrt(u)) * (1.0 - t * t / (12.0 * u))


@pytest.mark.parametrize("dof", sorted(T_TABLE))
def test_t_quantile_matches_tables(dof):
    assert study.t_quantile(0.95, dof) == pytest.approx(T_TABLE[dof], abs=5e-4)


def test_describe_mean_sd_and_t_interval():
    d = study.describe([0.80, 0.85, 0.90])
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.85)
    assert d["std"] == pytest.approx(0.05)  # ddof=1
    half = T_TABLE[2] * 0.05 / math.sqrt(3)
    assert d["ci_low"] == pytest.approx(0.85 - half, abs=1e-4)
    assert d["ci_high"] == pytest.approx(0.85 + half, abs=1e-4)
    assert d["method"].startswith("t over folds (2 df)")


def test_describe_clips_to_bounds_and_handles_small_samples():
    wide = study.describe([0.5, 1.0], bounds=(0.0, 1.0))
    assert wide["ci_high"] == 1.0 and wide["ci_low"] == 0.0  # 0.75 +- 12.7 * 0.25, clipped
    assert "clipped" in wide["method"]
    one = study.describe([0.7])
    assert (one["mean"], one["std"], one["ci_low"], one["ci_high"]) == (0.7, 0.0, None, None)
    assert study.describe([None, float("nan")])["mean"] is None


def test_paired_t_closed_form():
    a = np.array([0.80, 0.82, 0.78, 0.85, 0.81])
    b = a + np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    r = study.paired_t(a, b, test_train_ratio=1 / 3)
    # d = 0.01..0.05: mean 0.03, sd 0.01 * sqrt(2.5), se = sd / sqrt(5).
    sd = 0.01 * math.sqrt(2.5)
    se = sd / math.sqrt(5)
    assert r["mean"] == pytest.approx(0.03) and r["std"] == pytest.approx(sd)
    assert r["ci_low"] == pytest.approx(0.03 - T_TABLE[4] * se, abs=1e-4)
    assert r["ci_high"] == pytest.approx(0.03 + T_TABLE[4] * se, abs=1e-4)
    assert r["p_value"] == pytest.approx(2 * (1 - _t4_cdf(0.03 / se)), rel=1e-6)
    # Nadeau-Bengio: variance sd^2 (1/K + n_test/n_train) instead of sd^2 / K.
    corrected_se = sd * math.sqrt(1 / 5 + 1 / 3)
    assert r["corrected_ci_high"] - r["corrected_ci_low"] == pytest.approx(
        2 * T_TABLE[4] * corrected_se, abs=1e-4
    )
    assert r["corrected_p_value"] == pytest.approx(2 * (1 - _t4_cdf(0.03 / corrected_se)), rel=1e-6)
    assert r["corrected_p_value"] > r["p_value"]


def test_paired_t_is_antisymmetric_and_degenerate_cases():
    a, b = [0.7, 0.8, 0.75], [0.72, 0.79, 0.8]
    ab, ba = study.paired_t(a, b), study.paired_t(b, a)
    assert ab["mean"] == pytest.approx(-ba["mean"])
    assert ab["ci_low"] == pytest.approx(-ba["ci_high"])
    same = study.paired_t([0.5, 0.6], [0.6, 0.7])  # every difference 0.1: zero spread
    assert same["ci_low"] == pytest.approx(0.1) and same["p_value"] == 0.0
    assert study.paired_t([0.5], [0.6])["ci_low"] is None
    with pytest.raises(ValueError):
        study.paired_t([0.5, 0.6], [0.6])


def test_bootstrap_over_images_converges_to_the_t_interval():
    rng = np.random.default_rng(0)
    d = rng.normal(0.5, 1.0, size=400)
    r = study.paired_bootstrap(
        [np.zeros_like(d)], [d], study.mean_statistic, num_samples=4000, seed=1
    )
    half = study.t_quantile(0.95, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert r["mean"] == pytest.approx(d.mean())
    assert r["ci_low"] == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert r["ci_high"] == pytest.approx(d.mean() + half, abs=0.1 * half)
    assert (r["n_folds"], r["n_images"]) == (1, 400)


def test_bootstrap_over_folds_converges_to_the_t_interval():
    # One image per fold: resampling images changes nothing, resampling folds is the classic
    # bootstrap of the mean of 300 fold values.
    rng = np.random.default_rng(2)
    d = rng.normal(-0.2, 0.5, size=300)
    folds_b = [np.array([x]) for x in d]
    folds_a = [np.zeros(1) for _ in d]
    r = study.paired_bootstrap(folds_a, folds_b, study.mean_statistic, num_samples=3000, seed=3)
    half = study.t_quantile(0.95, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert r["ci_low"] == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert r["ci_high"] == pytest.approx(d.mean() + half, abs=0.1 * half)


def test_bootstrap_is_reproducible_and_paired():
    rng = np.random.default_rng(4)
    a = [rng.normal(size=30) for _ in range(3)]
    b = [x + 0.25 for x in a]  # a constant shift: every replicate differs by exactly 0.25
    r1 = study.paired_bootstrap(a, b, study.mean_statistic, num_samples=300, seed=7)
    r2 = study.paired_bootstrap(a, b, study.mean_statistic, num_samples=300, seed=7)
    assert r1 == r2
    assert r1["ci_low"] == pytest.approx(0.25) and r1["ci_high"] == pytest.approx(0.25)


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy", "macro_f1"])
def test_classification_statistic_equals_the_report_metrics(name):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, size=40)
    labels[labels == 3] = 2  # class 3 absent: balanced accuracy averages present classes only
    preds = np.where(rng.random(40) < 0.6, labels, rng.integers(0, 4, size=40))
    statistic = study.classification_statistic(name, 4)
    idx = rng.integers(0, 40, size=(6, 40))
    idx[0] = np.arange(40)
    values = statistic((labels, preds), idx)
    names = ["a", "b", "c", "d"]
    for r in range(6):
        expected = classification_metrics(labels[idx[r]], preds[idx[r]], names)[name]
        assert values[r] == pytest.approx(expected)
