"""What the numbers on the pages are: display names, the direction that is better, a sentence.

Keys are those of ``report.json`` and of ``attribution_metrics.json`` (``cervix_jax.explain
.batch.METRIC_KEYS``); a key missing here (a newer metric) is shown under its own name, with no
direction.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """``label`` for tables, ``higher_is_better`` (None: neither), ``description`` for tooltips
    and the methods notes."""

    label: str
    higher_is_better: bool | None
    description: str


METRIC_INFO: dict[str, MetricInfo] = {
    "accuracy": MetricInfo("Accuracy", True, "Share of test images classified correctly."),
    "balanced_accuracy": MetricInfo(
        "Balanced accuracy", True, "Mean recall over the classes present in the test fold."
    ),
    "macro_f1": MetricInfo("Macro F1", True, "Mean F1 over the five classes."),
    "localization_cells": MetricInfo(
        "Localization (cells)",
        True,
        "Share of positive attribution inside the cells divided by the cells' area share "
        "(1 = no better than uniform).",
    ),
    "localization_nuclei": MetricInfo(
        "Localization (nuclei)",
        True,
        "Share of positive attribution inside the nuclei divided by their area share "
        "(1 = no better than uniform).",
    ),
    "pointing_game": MetricInfo(
        "Pointing game", True, "Share of the map's energy that falls inside the cells."
    ),
    "insertion_auc": MetricInfo(
        "Insertion AUC",
        True,
        "Area under the target probability as the most attributed pixels are added back.",
    ),
    "deletion_auc": MetricInfo(
        "Deletion AUC",
        False,
        "Area under the target probability as the most attributed pixels are removed.",
    ),
    "completeness_error": MetricInfo(
        "Completeness error",
        False,
        "|sum of attributions - (f(x) - f(baseline))| / |f(x) - f(baseline)| (IG only).",
    ),
    "sanity_spearman": MetricInfo(
        "Sanity (Spearman)",
        False,
        "Rank correlation with the map of re-initialised weights (low = the map depends on "
        "what the model learned).",
    ),
}


def metric_info(key: str) -> MetricInfo:
    """``METRIC_INFO[key]``, or a neutral entry named after the key."""
    return METRIC_INFO.get(key, MetricInfo(key.replace("_", " ").capitalize(), None, ""))


def ordered_metrics(keys) -> list[str]:
    """``keys`` in the order of ``METRIC_INFO``, unknown keys after them, sorted."""
    known = [k for k in METRIC_INFO if k in keys]
    return known + sorted(k for k in keys if k not in METRIC_INFO)


def per_image_keys(metrics: dict | None) -> list[str]:
    """The metrics of an ``attribution_metrics.json`` that have per-image values (entries
    ``{"mean", "per_image"}``), in `ordered_metrics` order; [] for None."""
    if not metrics:
        return []
    return ordered_metrics(
        [k for k, v in metrics.items() if isinstance(v, dict) and "per_image" in v]
    )
