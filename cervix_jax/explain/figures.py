"""Per-run figures of an attribution run (matplotlib, written atomically).

- ``plot_curves``: deletion and insertion curves of the target probability, every image as a
  faint line, their mean and the 25-75% band.
- ``plot_cell_scores``: the cell-level scores of ``attribution_metrics.json`` per true class:
  where the positive attribution lies (nuclei, cytoplasm rings, background; stacked means) and
  the per-image values of the concentration, pointing and occlusion scores with their means.
- ``plot_randomization``: similarity of the maps to the trained model's against the stages of
  the model randomization (Adebayo et al. 2018), per measure the mean and spread over images.
"""

from __future__ import annotations

import os

import numpy as np

from cervix_jax.files import atomic_path

# Scores in [0, 1] (or [-1, 1]) shown per class, with the axis label each gets.
_CELL_SCORES = (
    ("top_cell_share", "top-cell share"),
    ("cell_gini", "Gini over cells"),
    ("cell_pointing_game", "max on a cell"),
    ("occlusion_spearman", "map vs occlusion rank corr."),
    ("occlusion_top_agreement", "deciding = occlusion top"),
)
_REGIONS = (
    ("cell_share_nuclei", "nuclei", "#7b3294"),
    ("cell_share_cytoplasm", "cytoplasm", "#c2a5cf"),
    ("cell_share_background", "background", "#d9d9d9"),
)


def _pyplot():
    # pyplot is imported on first use: it is slow to import, and the file backend must be
    # chosen first.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def plot_curves(
    path: str | os.PathLike,
    fraction: np.ndarray,
    deletion: np.ndarray,
    insertion: np.ndarray,
    *,
    title: str = "",
) -> None:
    """Deletion and insertion curves side by side.

    Args:
      path: the PNG to write.
      fraction: [T] share of pixels removed (deletion) or restored (insertion).
      deletion, insertion: [N, T] target probability of each image along the curve.
      title: figure title.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, curves, name, better in (
        (axes[0], deletion, "deletion", "lower is better"),
        (axes[1], insertion, "insertion", "higher is better"),
    ):
        curves = np.asarray(curves, np.float64)
        for curve in curves[:200]:
            ax.plot(fraction, curve, color="0.6", alpha=0.25, linewidth=0.7)
        low, high = np.percentile(curves, [25, 75], axis=0)
        ax.fill_between(fraction, low, high, color="tab:blue", alpha=0.25, label="25-75%")
        ax.plot(fraction, curves.mean(axis=0), color="tab:blue", linewidth=2, label="mean")
        auc = np.trapezoid(curves, fraction, axis=-1).mean()
        ax.set(
            title=f"{name}: mean AUC {auc:.3f} ({better})",
            xlabel=f"fraction of pixels {'removed' if name == 'deletion' else 'restored'}",
            xlim=(0, 1),
            ylim=(-0.02, 1.02),
        )
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("probability of the target class")
    axes[1].legend(loc="lower right")
    fig.suptitle(f"{title} ({len(deletion)} images)" if title else f"{len(deletion)} images")
    _save(fig, path)
    plt.close(fig)


def _by_class(metrics: dict, key: str) -> dict[str, list[float]]:
    """Finite per-image values of ``key`` grouped by true class (predicted when unknown)."""
    groups: dict[str, list[float]] = {}
    for image_id, value in metrics[key]["per_image"].items():
        info = metrics["images"][image_id]
        name = info["label_name"] or f"predicted {info['predicted_name']}"
        groups.setdefault(name, [])
        if value is not None:
            groups[name].append(value)
    return groups


def plot_cell_scores(path: str | os.PathLike, metrics: dict) -> None:
    """Cell-level scores per true class from ``attribution_metrics.json`` content."""
    plt = _pyplot()
    present = _by_class(metrics, _REGIONS[0][0])
    ordered = list(metrics.get("aggregates", {}).get("by_true_class", {}))  # label order
    classes = [c for c in ordered if c in present] + [c for c in present if c not in ordered]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.8]})
    x = np.arange(len(classes))
    bottom = np.zeros(len(classes))
    for key, name, colour in _REGIONS:
        groups = _by_class(metrics, key)
        means = np.array([np.mean(groups[c]) if groups[c] else 0.0 for c in classes])
        axes[0].bar(x, means, bottom=bottom, color=colour, label=name, edgecolor="white")
        bottom += means
    counts = [len(_by_class(metrics, _REGIONS[0][0])[c]) for c in classes]
    axes[0].set_xticks(
        x,
        [f"{c}\n(n={n})" for c, n in zip(classes, counts, strict=True)],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    axes[0].set(
        ylabel="share of positive attribution",
        ylim=(0, 1.2),
        yticks=np.linspace(0, 1, 6),
        title="where the positive attribution lies",
    )
    axes[0].legend(fontsize=8, loc="upper center", ncol=3)
    width = 0.8 / len(_CELL_SCORES)
    lowest = 0.0
    for j, (key, name) in enumerate(_CELL_SCORES):
        groups = _by_class(metrics, key)
        lowest = min([lowest, *[v for c in classes for v in groups[c]]])
        offset = (j - (len(_CELL_SCORES) - 1) / 2) * width
        means = [np.mean(groups[c]) if groups[c] else np.nan for c in classes]
        axes[1].bar(x + offset, means, width, label=name, alpha=0.8)
        for i, c in enumerate(classes):
            jitter = np.linspace(-0.3, 0.3, len(groups[c])) * width
            axes[1].scatter(x[i] + offset + jitter, groups[c], s=6, color="black", zorder=3)
    axes[1].axhline(0.0, color="black", linewidth=0.8)
    axes[1].set_xticks(x, classes, rotation=30, ha="right", fontsize=8)
    ticks = np.linspace(-1, 1, 9)
    axes[1].set(
        ylim=(min(-0.1, lowest - 0.05), 1.3),
        yticks=ticks[ticks >= lowest - 0.25],
        title="concentration, pointing and occlusion (dots: images)",
    )
    axes[1].legend(fontsize=7, ncol=3, loc="upper center")
    axes[1].grid(axis="y", alpha=0.3)
    fig.suptitle(f"cell-level scores of {metrics['method']} ({metrics['num_images']} images)")
    _save(fig, path)
    plt.close(fig)


_MEASURE_STYLES = {
    "spearman": ("Spearman (signed)", "tab:blue"),
    "spearman_abs": ("Spearman |map|", "tab:orange"),
    "pearson_abs": ("Pearson |map|", "tab:green"),
    "ssim": ("SSIM |map|", "tab:red"),
}


def plot_randomization(
    path: str | os.PathLike, summary: dict, *, kind: str = "cascading", title: str = ""
) -> None:
    """Similarity of the maps to the trained model's against the randomization stages.

    Args:
      path: the PNG to write.
      summary: the ``randomization`` block of ``attribution_metrics.json``: ``stages``
        (``'original'`` first, then the deepest layer each stage re-initialises),
        ``num_images`` and per measure ``{'mean': [...], 'std': [...]}`` over the images at
        each stage (None where no image has a value).
      kind: ``cascading`` or ``independent`` (the x-axis label).
      title: figure title.
    """
    plt = _pyplot()
    stages = summary["stages"]
    fig, ax = plt.subplots(figsize=(max(8.5, 0.38 * len(stages) + 4.5), 4.6))
    x = np.arange(len(stages))
    for measure, (name, colour) in _MEASURE_STYLES.items():
        if measure not in summary:
            continue
        mean, std = (
            np.asarray([np.nan if v is None else v for v in summary[measure][k]], np.float64)
            for k in ("mean", "std")
        )
        ax.plot(x, mean, marker="o", markersize=3.5, color=colour, label=name)
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, stages, rotation=60, ha="right", fontsize=8)
    reached = "re-initialised from the head down to" if kind == "cascading" else "re-initialised"
    ax.set(
        xlim=(-0.3, len(stages) - 0.7),
        ylim=(-1.05, 1.05),
        xlabel=f"layer {reached} ({kind})",
        ylabel="similarity to the trained model's maps",
    )
    ax.grid(alpha=0.3)
    ax.legend(  # beside the axes: the curves start together at 1 and spread over the plot
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title="mean ± sd over images",
        title_fontsize=8,
    )
    count = f"{summary['num_images']} images"
    fig.suptitle(f"{title} ({count})" if title else count)
    _save(fig, path)
    plt.close(fig)
