"""Matplotlib figures of the study page, returned as PNG bytes (inlined into the page)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

PALETTE = ("#2680c2", "#e3783d", "#3f9142", "#8e5cc2", "#c2415b", "#7b8794")


def _pyplot():
    # pyplot is imported when a figure is drawn (not when the package is), with the file
    # backend chosen first: the pages are made on machines without a display.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def per_class_bars(
    class_names: Sequence[str],
    models: Sequence[str],
    means: np.ndarray,
    stds: np.ndarray,
    title: str,
) -> bytes:
    """Grouped bars: per class, one bar per model (``means``, ``stds``: ``[models, classes]``,
    NaN where a model has no result), with sd error bars."""
    plt = _pyplot()
    means, stds = np.asarray(means, float), np.asarray(stds, float)
    fig, ax = plt.subplots(figsize=(9.0, 3.6))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(class_names))
    for i, model in enumerate(models):
        ax.bar(
            x + (i - (len(models) - 1) / 2) * width,
            np.nan_to_num(means[i]),
            width * 0.92,
            yerr=np.nan_to_num(stds[i]),
            capsize=2,
            label=model,
            color=PALETTE[i % len(PALETTE)],
            error_kw={"elinewidth": 0.8, "alpha": 0.7},
        )
    ax.set_xticks(x, [c.replace("-", "-\n") for c in class_names], fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 (mean ± sd over folds)")
    ax.set_title(title, fontsize=11, loc="right")
    ax.legend(
        fontsize=8,
        ncols=min(len(models), 4),
        loc="lower left",
        bbox_to_anchor=(0.0, 1.06),
        frameon=False,
    )
    _style(ax)
    return _png(fig)


def forest(
    labels: Sequence[str],
    means: Sequence[float],
    intervals: Sequence[tuple[float, float] | None],
    boot: Sequence[tuple[float, float] | None],
) -> bytes:
    """One row per comparison: the mean difference, its corrected t interval (thick) and its
    bootstrap interval (thin), and the line of no difference."""
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(7.0, 0.34 * n + 0.9))
    y = np.arange(n)[::-1]
    # The axis spans the means and bootstrap intervals; a t interval of few folds can be far
    # wider (t with 1 df: 12.7), so it is cut at the edge and marked with an arrow there.
    seen = [abs(v) for v in [*means, *[b for pair in boot if pair for b in pair]] if v is not None]
    edge = 1.5 * max(seen + [1e-3])
    for row, mean, ci, bci in zip(y, means, intervals, boot, strict=True):
        if bci is not None:
            ax.plot(bci, [row - 0.18] * 2, color="#9aa5b1", lw=1.2)
        if ci is not None:
            excludes = ci[0] > 0 or ci[1] < 0
            color = "#2680c2" if excludes else "#52606d"
            ax.plot(np.clip(ci, -edge, edge), [row] * 2, color=color, lw=3)
            for end, marker in ((ci[0], "<"), (ci[1], ">")):
                if abs(end) > edge:
                    ax.plot([np.clip(end, -edge, edge)], [row], marker, color=color, ms=6)
        if mean is not None:
            ax.plot([mean], [row], "o", color="#102a43", ms=4)
    ax.set_xlim(-edge * 1.05, edge * 1.05)
    ax.axvline(0.0, color="#c23b22", lw=0.8, ls="--")
    ax.set_yticks(y, labels, fontsize=8.5)
    ax.set_xlabel(
        "difference b − a (thick: corrected t 95% CI; thin: bootstrap 95% CI)", fontsize=9
    )
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
