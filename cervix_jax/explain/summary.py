"""The content of ``attribution_metrics.json`` and ``methods_table.json`` (plain dicts).

``attribution_metrics.json`` (contract shared with the report gallery): the settings; one
entry ``{"mean", "per_image": {image_id: value | null}}`` per metric
(``settings.metric_keys``); ``images``: per image ``label``, ``label_name`` (null when
unknown), ``predicted``, ``predicted_name``, ``probability`` (of the predicted class),
``target``, ``panel`` and ``map`` (paths relative to OUT; null when not written), ``source``
(the image file, null for a split) and ``cells`` (``num_cells``, ``deciding_cell`` and
``pointing_cell`` (0 = background; null without cells), and lists indexed by label k, index 0
the background: ``present``, ``positive_mass``, ``signed_mass``, ``occlusion_drop``);
``aggregates``: the mean of every metric ``by_true_class``, ``by_predicted_class`` and
``by_correctness`` (``correct`` / ``wrong``), each group with its ``num_images``; ``figures``:
the run's files. With ``Settings.evaluate``: ``evaluation`` (what was evaluated and how: the
fill of the faithfulness curves as ``Fill.record()``, the randomization's kind and stages,
the perturbations) and, with the randomization, ``randomization`` (per measure the mean and
standard deviation over images of the similarity at each stage).

``methods_table.json``: for each method of a run (rows) and each metric (columns) the mean,
standard deviation and count of the finite per-image values (`methods_table`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cervix_jax.explain.evaluation import RANDOMIZATION_MEASURES
from cervix_jax.explain.settings import CELL_METRIC_KEYS, Settings

# Which way is better for each metric (None: descriptive), shown in the methods table.
METRIC_DIRECTIONS: dict[str, str | None] = {
    "completeness_error": "lower",
    "localization_cells": "higher",
    "localization_nuclei": "higher",
    "pointing_game": "higher",
    "deletion_auc": "lower",
    "insertion_auc": "higher",
    "sanity_spearman": "lower",
    "cell_share_nuclei": "higher",
    "cell_share_cytoplasm": None,
    "cell_share_background": "lower",
    "top_cell_share": None,
    "cell_gini": None,
    "cell_pointing_game": "higher",
    "occlusion_spearman": "higher",
    "occlusion_top_agreement": "higher",
    **{f"randomization_{m}": "lower" for m in RANDOMIZATION_MEASURES},
    "random_logit_ssim": "lower",
    "imputed_deletion_auc": "lower",
    "imputed_insertion_auc": "higher",
    "infidelity": "lower",
    "max_sensitivity": "lower",
    "sparseness": "higher",
    "effective_complexity": "lower",
    "entropy_complexity": "lower",
}
# The methods table's column groups, each a table of its own (a metric in none goes last).
METRIC_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Localization", ("localization_cells", "localization_nuclei", "pointing_game")),
    ("Cells", CELL_METRIC_KEYS),
    (
        "Faithfulness",
        (
            "completeness_error",
            "deletion_auc",
            "insertion_auc",
            "imputed_deletion_auc",
            "imputed_insertion_auc",
            "infidelity",
        ),
    ),
    (
        "Randomization",
        (
            "sanity_spearman",
            *(f"randomization_{m}" for m in RANDOMIZATION_MEASURES),
            "random_logit_ssim",
        ),
    ),
    (
        "Robustness and complexity",
        ("max_sensitivity", "sparseness", "effective_complexity", "entropy_complexity"),
    ),
)


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when it is missing or not finite (JSON null)."""
    return None if value is None or not math.isfinite(value) else float(value)


def method_label(settings: Settings) -> str:
    """The method as a reader names it: ``'ig'``, or ``'ig + vargrad'`` in a noise tunnel."""
    if settings.noise_tunnel == "none":
        return settings.method
    return f"{settings.method} + {settings.noise_tunnel}"


def summarize(per_image: dict[str, dict[str, float]], settings: Settings, extra: dict) -> dict:
    """The ``attribution_metrics.json`` content from ``{metric: {image_id: value}}``."""
    out: dict[str, Any] = {
        "method": settings.method,
        "steps": settings.steps if settings.is_path_method else None,
        "num_images": len(next(iter(per_image.values()), {})),
        **extra,
    }
    for key, values in per_image.items():
        finite = [v for v in values.values() if v is not None and math.isfinite(v)]
        out[key] = {
            "mean": float(np.mean(finite)) if finite else None,
            "per_image": {k: finite_or_none(v) for k, v in values.items()},
        }
    return out


def metric_names(metrics: Mapping[str, Any]) -> list[str]:
    """The per-image metrics of ``attribution_metrics.json``, in their order."""
    return [k for k, v in metrics.items() if isinstance(v, dict) and "per_image" in v]


def aggregates(metrics: dict, class_names: tuple[str, ...]) -> dict:
    """Means of every per-image metric by true class, predicted class and correctness.

    Args:
      metrics: ``attribution_metrics.json`` content with its ``images`` block.
      class_names: the label order (groups follow it; empty groups are left out).

    Returns:
      ``{'by_true_class' | 'by_predicted_class': {class name: group}, 'by_correctness':
      {'correct' | 'wrong': group}}``, a group being ``{'num_images': n, 'metrics': {key:
      mean of the finite values | None}}``. Images without a known label are counted only by
      predicted class.
    """
    members: dict[str, dict[str, list[str]]] = {
        "by_true_class": {c: [] for c in class_names},
        "by_predicted_class": {c: [] for c in class_names},
        "by_correctness": {"correct": [], "wrong": []},
    }
    for image_id, info in metrics["images"].items():
        members["by_predicted_class"].setdefault(info["predicted_name"], []).append(image_id)
        if info["label_name"] is not None:
            members["by_true_class"].setdefault(info["label_name"], []).append(image_id)
            right = "correct" if info["label"] == info["predicted"] else "wrong"
            members["by_correctness"][right].append(image_id)

    def group(ids: list[str]) -> dict:
        means = {}
        for key in metric_names(metrics):
            values = [metrics[key]["per_image"].get(i) for i in ids]
            finite = [v for v in values if v is not None]
            means[key] = float(np.mean(finite)) if finite else None
        return {"num_images": len(ids), "metrics": means}

    return {
        grouping: {name: group(ids) for name, ids in groups.items() if ids}
        for grouping, groups in members.items()
    }


def run_description(
    settings: Settings, *, split: str | None, workdir, model: str, image_size: int
) -> dict:
    """The settings, split and model that ``attribution_metrics.json`` records (``split``
    None for image files)."""
    uses_baselines = settings.method in ("ig", "guided_ig")
    tunnel = settings.noise_tunnel != "none"
    noisy = tunnel or settings.method == "smoothgrad"
    return {
        "split": split,
        "target": settings.target,
        "score": settings.score,
        "baseline": settings.baseline if uses_baselines else None,
        "ig_method": settings.ig_method if settings.method in ("ig", "blur_ig") else None,
        "num_baselines": (
            settings.num_baselines if uses_baselines and settings.baseline == "uniform" else None
        ),
        "chunk_size": settings.chunk_size if settings.method in ("ig", "blur_ig") else None,
        "blur_max_sigma": settings.blur_max_sigma if settings.method == "blur_ig" else None,
        "guided_fraction": settings.guided_fraction if settings.method == "guided_ig" else None,
        "guided_max_distance": (
            settings.guided_max_distance if settings.method == "guided_ig" else None
        ),
        "noise_tunnel": settings.noise_tunnel if tunnel else None,
        "noise_samples": settings.noise_samples if noisy else None,
        "noise_level": settings.noise_level if noisy else None,
        "deletion_steps": settings.deletion_steps,
        "max_cells": settings.max_cells,
        "workdir": os.fspath(workdir),
        "model": model,
        "image_size": image_size,
    }


def evaluation_description(settings: Settings, stages: Sequence[str]) -> dict:
    """The ``evaluation`` block: what ``settings.evaluate`` computed, and with what."""
    asked = settings.evaluate
    out: dict[str, Any] = {"evaluate": list(asked)}
    if "faithfulness" in asked:
        out["fill"] = settings.fill_spec.record()
    if "randomization" in asked:
        out["randomization"] = {
            "kind": settings.randomization,
            "stages": list(stages),
            "measures": list(RANDOMIZATION_MEASURES),
            "metric": "mean similarity over the re-initialised stages",
        }
    if "infidelity" in asked:
        out["infidelity"] = {
            "num_samples": settings.perturbation_samples,
            "noise_std": settings.infidelity_noise,
            "normalize": True,
            "multiply_by_inputs": settings.is_path_method,
        }
    if "max_sensitivity" in asked:
        out["max_sensitivity"] = {
            "num_samples": settings.perturbation_samples,
            "radius": settings.sensitivity_radius,
            "norm": "fro",
        }
    return out


def randomization_summary(curves: np.ndarray, stages: Sequence[str]) -> dict:
    """The ``randomization`` block from per-image curves [N, stages, measures]: per measure
    the mean and standard deviation over images (finite values) at each stage."""
    curves = np.asarray(curves, np.float64)
    out: dict[str, Any] = {"stages": list(stages), "num_images": int(curves.shape[0])}
    for i, measure in enumerate(RANDOMIZATION_MEASURES):
        values = curves[:, :, i]
        finite = np.isfinite(values).any(axis=0)
        with warnings.catch_warnings():  # a stage without a finite value is None below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        out[measure] = {
            "mean": [float(m) if ok else None for m, ok in zip(mean, finite, strict=True)],
            "std": [float(s) if ok else None for s, ok in zip(std, finite, strict=True)],
        }
    return out


def class_name(class_names: tuple[str, ...], index: int) -> str | None:
    return class_names[index] if 0 <= index < len(class_names) else None


def cells_entry(host: dict[str, np.ndarray], row: int) -> dict:
    """The ``cells`` of an image's ``images`` entry: lists indexed by label (0 = background)."""
    count = int(host["num_cells"][row])
    present = host["present"][row][: count + 1]
    valid = bool(present.any())
    listed = lambda key: [finite_or_none(v) for v in host[key][row][: count + 1]]
    drops = listed("occlusion_drop")
    return {
        "num_cells": count,
        "deciding_cell": int(host["deciding_cell"][row]) if valid else None,
        "pointing_cell": int(host["pointing_cell"][row]) if valid else None,
        "present": [bool(p) for p in present],
        "positive_mass": listed("positive_mass"),
        "signed_mass": listed("signed_mass"),
        "occlusion_drop": [None] + drops[1:] if drops else [],
    }


def image_entry(
    host: dict[str, np.ndarray],
    row: int,
    class_names: tuple[str, ...],
    written: str | None,
    source: str | None,
) -> dict:
    """The ``images`` entry of one image in ``attribution_metrics.json`` (``written``: its
    panel and map path relative to OUT without suffix, None when not written; ``source``:
    its file, None for a split)."""
    label, logits = int(host["label"][row]), np.asarray(host["logits"][row], np.float64)
    probabilities = np.exp(logits - logits.max())
    predicted = int(np.argmax(logits))
    known = label >= 0
    return {
        "label": label if known else None,
        "label_name": class_name(class_names, label),
        "predicted": predicted,
        "predicted_name": class_name(class_names, predicted),
        "probability": float(probabilities[predicted] / probabilities.sum()),
        "target": int(host["target"][row]),
        "panel": None if written is None else f"{written}.png",
        "map": None if written is None else f"{written}.npy",
        "source": source,
        "cells": cells_entry(host, row),
    }


def methods_table(runs: Mapping[str, Mapping[str, Any]]) -> dict:
    """``methods_table.json``: methods as rows, metrics as columns, over images.

    Args:
      runs: ``{method label: attribution_metrics.json content}``, in row order.

    Returns:
      ``{'methods': [labels], 'metrics': [keys, first-seen order], 'better': {key: 'higher' |
      'lower' | None}, 'num_images': {label: n}, 'cells': {label: {key: {'mean', 'std', 'n'} |
      None}}}``: mean and (population) standard deviation of the finite per-image values,
      ``n`` their count; None where a method has no such metric or no finite value.
    """
    keys: list[str] = []
    for metrics in runs.values():
        keys += [k for k in metric_names(metrics) if k not in keys]
    cells: dict[str, dict[str, Any]] = {}
    for label, metrics in runs.items():
        row = {}
        for key in keys:
            values = metrics.get(key, {}).get("per_image", {}).values()
            finite = np.asarray([v for v in values if v is not None], np.float64)
            row[key] = (
                {"mean": float(finite.mean()), "std": float(finite.std()), "n": len(finite)}
                if finite.size
                else None
            )
        cells[label] = row
    return {
        "methods": list(runs),
        "metrics": keys,
        "better": {key: METRIC_DIRECTIONS.get(key) for key in keys},
        "num_images": {label: m.get("num_images") for label, m in runs.items()},
        "cells": cells,
    }
