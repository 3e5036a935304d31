"""Statistics of a cross-validated comparison: intervals over folds and paired differences.

Every interval is named by the method that made it (``method`` in the returned dicts), because
the methods answer different questions and rest on different assumptions:

- ``describe``: mean, sample standard deviation (ddof=1) and a Student-t interval over the K
  fold values (K - 1 degrees of freedom). Assumes the fold values are independent draws from a
  normal distribution. They are not independent (the training sets of K-fold runs overlap), so
  the interval is optimistic; it describes the spread of this study's folds.
- ``paired_t``: differences of two models on the same folds, their mean and a paired t interval
  (K - 1 degrees of freedom) with its two-sided p-value; and the same with the variance
  corrected for overlapping training sets (Nadeau & Bengio 2003, "Inference for the
  generalization error"): ``var * (1/K + n_test/n_train)`` instead of ``var / K``. The
  corrected interval is the one to read for a verdict; the plain one is given for comparison
  with papers that use it.
- ``paired_bootstrap``: a two-level percentile bootstrap of the mean difference, resampling
  folds and, within each drawn fold, test images (both with replacement, the same images for
  the two models). Assumes folds are exchangeable and images exchangeable within a fold; it
  carries the test-set sampling noise that a t interval over a few folds cannot see, but not
  the training noise across folds beyond what the K folds show.

The study calls a difference shown only when the corrected t interval and the bootstrap
interval both exclude 0 (``cervix_jax.study.collect.verdict``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as scipy_stats

from cervix_jax.train import per_class_scores

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
# The methods in a paragraph, for the reports.
METHODS = (
    "Per (model, variant), mean and sample sd over the K test folds and a 95% Student-t "
    "interval (K - 1 df; clipped to [0, 1] for bounded scores), which treats folds as "
    "independent; they share training data, so it is optimistic. Paired comparisons (b - a on "
    "the same folds and images): paired t over folds; the same with the Nadeau-Bengio "
    "correction for overlapping training sets (variance x (1/K + n_test/n_train), "
    "n_test/n_train = 1/(K - 2)); and a percentile bootstrap that resamples folds, then test "
    "images within each fold (the same images for both models). A difference is reported as "
    "shown when both the corrected t interval and the bootstrap interval exclude 0 on the "
    "same side. No correction for the number of "
    "comparisons: at 95%, about one in twenty true nulls is flagged by chance."
)


def t_quantile(confidence: float, dof: int) -> float:
    """The two-sided Student-t critical value: ``P(|T| <= q) = confidence`` with ``dof`` df."""
    return float(scipy_stats.t.ppf(0.5 + confidence / 2.0, dof))


def describe(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] | None = None,
) -> dict:
    """Mean, sample sd and a t interval over fold values.

    Args:
      values: one value per fold; None and non-finite values are dropped.
      confidence: of the interval.
      bounds: the range of the metric (e.g. (0, 1) for accuracy); the interval is clipped to
        it (a t interval over few folds easily reaches past 1).

    Returns:
      ``{n, mean, std, ci_low, ci_high, confidence, method}``; ``std`` is 0 and the interval
      None for a single value; every field None for no values.
    """
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    out = {"n": int(v.size), "confidence": confidence, "method": f"t over folds ({v.size - 1} df)"}
    if v.size == 0:
        return {**out, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = float(v.mean())
    if v.size == 1:
        return {**out, "mean": mean, "std": 0.0, "ci_low": None, "ci_high": None}
    std = float(v.std(ddof=1))
    half = t_quantile(confidence, v.size - 1) * std / math.sqrt(v.size)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
        out["method"] += f", clipped to [{bounds[0]:g}, {bounds[1]:g}]"
    return {**out, "mean": mean, "std": std, "ci_low": low, "ci_high": high}


def paired_t(
    a: Sequence[float],
    b: Sequence[float],
    *,
    test_train_ratio: float | None = None,
    confidence: float = CONFIDENCE,
) -> dict:
    """Paired t statistics of ``b - a`` over folds (``a[k]``, ``b[k]``: fold k of each model).

    Args:
      a, b: per-fold values of the two models, same length and fold order.
      test_train_ratio: ``n_test / n_train`` of a fold; when given, the Nadeau-Bengio corrected
        interval and p-value are added (``corrected_*``).
      confidence: of the intervals.

    Returns:
      ``{n, mean, std, ci_low, ci_high, p_value, method}`` (and ``corrected_ci_low``,
      ``corrected_ci_high``, ``corrected_p_value``); intervals None below two folds, and an
      interval of width 0 with p-value 1 or 0 when every difference is the same.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values of different lengths: {a.shape} and {b.shape}")
    d = b - a
    k = d.size
    out = {"n": int(k), "mean": float(d.mean()) if k else None, "method": f"paired t ({k - 1} df)"}
    keys = ["std", "ci_low", "ci_high", "p_value"]
    if test_train_ratio is not None:
        keys += ["corrected_ci_low", "corrected_ci_high", "corrected_p_value"]
        out["corrected_method"] = f"Nadeau-Bengio corrected paired t ({k - 1} df)"
    if k < 2:
        return {**out, **dict.fromkeys(keys)}
    std = float(d.std(ddof=1))
    out.update(std=std, **_t_test(out["mean"], std**2 / k, k - 1, confidence))
    if test_train_ratio is not None:
        variance = std**2 * (1.0 / k + float(test_train_ratio))
        corrected = _t_test(out["mean"], variance, k - 1, confidence)
        out.update({f"corrected_{key}": value for key, value in corrected.items()})
    return out


def _t_test(mean: float, variance_of_mean: float, dof: int, confidence: float) -> dict:
    """Interval ``mean +- q * se`` and the two-sided p-value of ``mean == 0``."""
    se = math.sqrt(variance_of_mean)
    half = t_quantile(confidence, dof) * se
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = float(2.0 * scipy_stats.t.sf(abs(mean) / se, dof))
    return {"ci_low": mean - half, "ci_high": mean + half, "p_value": p}


def paired_bootstrap(
    a_folds: Sequence,
    b_folds: Sequence,
    statistic: Callable,
    *,
    num_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict:
    """Two-level percentile bootstrap of ``mean over folds of statistic(b) - statistic(a)``.

    Each replicate draws K folds with replacement and, for each drawn fold, its n test images
    with replacement; both models are scored on the same drawn images.

    Args:
      a_folds, b_folds: per fold, the per-image data of each model: an array ``[n, ...]`` or a
        tuple of such arrays (e.g. ``(labels, preds)``), the same n for a and b of a fold.
      statistic: ``statistic(fold_data, idx [R, n]) -> [R]``, the per-replicate value of a
        fold on the drawn image indices (`mean_statistic`, `classification_statistic`).
      num_samples: replicates R.
      seed: of numpy's PRNG (fixed seed, same interval).
      confidence: of the percentile interval.

    Returns:
      ``{n_folds, n_images, mean (the observed difference), ci_low, ci_high, num_samples,
      seed, method}``.
    """
    k = len(a_folds)
    if k == 0 or k != len(b_folds):
        raise ValueError(f"paired bootstrap needs the same folds for both: {k}, {len(b_folds)}")
    rng = np.random.default_rng(seed)
    sizes = [_num_images(fold) for fold in a_folds]
    observed = [
        statistic(b, np.arange(n)[None])[0] - statistic(a, np.arange(n)[None])[0]
        for a, b, n in zip(a_folds, b_folds, sizes, strict=True)
    ]
    fold_draws = rng.integers(0, k, size=(num_samples, k))
    total = np.zeros(num_samples)
    for fold in range(k):
        # One image resample per (replicate, slot) that drew this fold, all scored at once.
        rows = np.nonzero(fold_draws == fold)[0]
        idx = rng.integers(0, sizes[fold], size=(rows.size, sizes[fold]))
        diff = statistic(b_folds[fold], idx) - statistic(a_folds[fold], idx)
        np.add.at(total, rows, diff)
    replicates = total / k
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return {
        "n_folds": k,
        "n_images": int(sum(sizes)),
        "mean": float(np.mean(observed)),
        "ci_low": float(low),
        "ci_high": float(high),
        "num_samples": int(num_samples),
        "seed": int(seed),
        "method": "percentile bootstrap over folds and images",
    }


def _num_images(fold_data) -> int:
    first = fold_data[0] if isinstance(fold_data, tuple) else fold_data
    return int(np.shape(first)[0])


def mean_statistic(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``[R]`` means of per-image ``values [n]`` over drawn indices ``idx [R, n]``."""
    return np.asarray(values, np.float64)[idx].mean(axis=1)


def classification_statistic(name: str, num_classes: int) -> Callable:
    """``statistic((labels [n], preds [n]), idx [R, n]) -> [R]`` for ``accuracy``,
    ``balanced_accuracy`` or ``macro_f1``, with the definitions of
    ``cervix_jax.train.classification_metrics`` (balanced accuracy over the classes present)."""
    if name not in ("accuracy", "balanced_accuracy", "macro_f1"):
        raise ValueError(f"no classification statistic {name!r}")

    def statistic(data: tuple[np.ndarray, np.ndarray], idx: np.ndarray) -> np.ndarray:
        labels, preds = (np.asarray(x, np.int64)[idx] for x in data)
        if name == "accuracy":
            return (labels == preds).mean(axis=1)
        rows = np.arange(idx.shape[0])[:, None]
        cells = (rows * num_classes + labels) * num_classes + preds
        cm = np.bincount(cells.ravel(), minlength=idx.shape[0] * num_classes**2)
        scores = per_class_scores(cm.reshape(idx.shape[0], num_classes, num_classes))
        if name == "macro_f1":
            return scores["f1"].mean(axis=1)
        present = scores["support"] > 0
        return (scores["recall"] * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)

    return statistic
