"""Markdown of a run's ``attribution_metrics.json`` and of a run's methods table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cervix_jax.explain.summary import METRIC_DIRECTIONS, METRIC_FAMILIES, metric_names

_METRICS_TEXT = (
    "Localisation ratios: share of positive attribution in the region / its area share "
    "(1.0 = uniform). Pointing game: energy share inside the cells. Completeness: "
    "relative error. Deletion (low is good) and insertion (high is good) AUCs of the "
    "target probability. Cell level (per cell outline): shares of the positive mass in "
    "nuclei, cytoplasm rings and background; top_cell_share, the largest cell's share "
    "of the positive mass on cells, and cell_gini (1 = all on one cell); the deciding "
    "cell has the largest signed mass; cell_pointing_game, the map's maximum on a "
    "cell; occlusion_spearman, rank agreement of the cells' signed "
    "masses with the drop in target probability when each cell is replaced by the "
    "background (0 = chance); occlusion_top_agreement, the deciding cell is the one "
    "whose removal costs most."
)
_EVALUATION_TEXT = {
    "randomization": "randomization_*: similarity of the maps to those of the model with its "
    "layers re-initialised ({kind}), mean over the stages (low is good: the map depends "
    "on the weights; randomization.png plots it against depth)",
    "random_logit": "random_logit_ssim: SSIM of the map to the map of a random other class "
    "(low is good)",
    "faithfulness": "imputed_deletion_auc / imputed_insertion_auc: deletion and insertion "
    "with removed pixels filled by `{fill}` (low / high is good)",
    "infidelity": "infidelity: squared error of the map's prediction of the score change "
    "under Gaussian perturbations, after the best rescaling (low is good)",
    "max_sensitivity": "max_sensitivity: largest relative change of the map when the image "
    "moves by at most {radius} grey levels per pixel (low is good)",
    "complexity": "sparseness (Gini of |map|, high = concentrated), effective_complexity "
    "(pixels above 1e-5 of the maximum) and entropy_complexity (low = simple)",
}


def show(value: float | None) -> str:
    """A number for a table: 4 significant digits, ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.4g}"


def _aggregate_markdown(metrics: dict) -> list[str]:
    """One table per grouping of ``aggregates``: a row per metric, a column per group."""
    lines = []
    titles = {
        "by_true_class": "By true class",
        "by_predicted_class": "By predicted class",
        "by_correctness": "Correct vs wrong predictions",
    }
    for grouping, groups in metrics.get("aggregates", {}).items():
        if not groups:
            continue
        names = list(groups)
        lines += [
            "",
            f"## {titles.get(grouping, grouping)}",
            "",
            "| metric | " + " | ".join(f"{g} (n={groups[g]['num_images']})" for g in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for key in metric_names(metrics):
            row = [show(groups[g]["metrics"].get(key)) for g in names]
            lines.append(f"| {key} | " + " | ".join(row) + " |")
    return lines


def _image_markdown(metrics: dict, names: list[str]) -> list[str]:
    """The per-image table: classes, deciding cell and every metric."""
    images = metrics.get("images", {})
    lines = [
        "",
        "## Per image",
        "",
        "| image | true | predicted (p) | deciding cell | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for image_id in list(metrics[names[0]]["per_image"]) if names else []:
        info = images.get(image_id, {})
        predicted = f"{info.get('predicted_name', '?')} ({show(info.get('probability'))})"
        deciding = (info.get("cells") or {}).get("deciding_cell")
        row = [str(info.get("label_name")), predicted, str(deciding or "-")]
        row += [show(metrics[k]["per_image"].get(image_id)) for k in names]
        lines.append(f"| {image_id} | " + " | ".join(row) + " |")
    return lines


def _evaluation_text(metrics: dict) -> str:
    """What the evaluations of the run mean, with their settings."""
    evaluation = metrics.get("evaluation") or {}
    options = {
        "kind": (evaluation.get("randomization") or {}).get("kind"),
        "fill": (evaluation.get("fill") or {}).get("kind"),
        "radius": (evaluation.get("max_sensitivity") or {}).get("radius"),
    }
    parts = [_EVALUATION_TEXT[e].format(**options) for e in evaluation.get("evaluate", [])]
    return "Evaluations: " + "; ".join(parts) + "." if parts else ""


def _heading_line(metrics: dict) -> str:
    """Images, split, target, score and the path method's steps and baseline."""
    path = metrics.get("steps") is not None
    return (
        f"{metrics['num_images']} images of "
        + (f"split `{metrics.get('split', '?')}`" if metrics.get("split") else "image files")
        + f", target `{metrics.get('target', '?')}`, score `{metrics.get('score', '?')}`"
        + (f", {metrics['steps']} steps" if path else "")
        + (f" ({metrics.get('ig_method')})" if path and metrics.get("ig_method") else "")
        + (f", baseline `{metrics.get('baseline')}`" if path and metrics.get("baseline") else "")
        + (f", noise tunnel `{metrics['noise_tunnel']}`" if metrics.get("noise_tunnel") else "")
        + "."
    )


def metrics_markdown(metrics: dict) -> str:
    """A short Markdown report of ``attribution_metrics.json``."""
    names = metric_names(metrics)
    evaluation = _evaluation_text(metrics)
    lines = [
        f"# Attribution metrics: {metrics['method']}",
        "",
        _heading_line(metrics),
        "",
        _METRICS_TEXT,
        *(["", evaluation] if evaluation else []),
        "",
        "| metric | mean |",
        "|---|---|",
        *[f"| {k} | {show(metrics[k]['mean'])} |" for k in names],
        *_aggregate_markdown(metrics),
        *_image_markdown(metrics, names),
    ]
    return "\n".join(lines) + "\n"


def _cell(entry: dict[str, Any] | None, num_images: int | None) -> str:
    """``mean ± std`` over images, with the count when some images have no value."""
    if entry is None:
        return "–"
    fmt: Callable[[float], str] = lambda v: f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    text = f"{fmt(entry['mean'])} ± {fmt(entry['std'])}"
    return text if entry["n"] == num_images else f"{text} (n={entry['n']})"


def methods_table_markdown(table: dict, title: str = "Methods compared") -> str:
    """``methods_table.json`` as Markdown: one table per metric family (`METRIC_FAMILIES`),
    methods as rows, metrics as columns, each cell ``mean ± std`` over the images; arrows say
    which way is better."""
    arrows = {"higher": " ↑", "lower": " ↓", None: ""}
    counts = ", ".join(f"{m}: {n}" for m, n in table["num_images"].items())
    lines = [
        f"# {title}",
        "",
        f"Mean ± standard deviation over images (images per method: {counts}); ↑ higher is "
        "better, ↓ lower is better; n = images with a value where fewer. Per-image values "
        "and what each metric means: each method's `attribution_metrics.md`.",
    ]
    placed = {k for _, keys in METRIC_FAMILIES for k in keys}
    families = [*METRIC_FAMILIES, ("Other", tuple(k for k in table["metrics"] if k not in placed))]
    for family, keys in families:
        columns = [k for k in keys if k in table["metrics"]]
        if not columns:
            continue
        header = [f"{k}{arrows[METRIC_DIRECTIONS.get(k)]}" for k in columns]
        lines += ["", f"## {family}", "", "| method | " + " | ".join(header) + " |"]
        lines.append("|---|" + "---|" * len(columns))
        for method in table["methods"]:
            n = table["num_images"].get(method)
            row = [_cell(table["cells"][method].get(k), n) for k in columns]
            lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
