"""Evaluation artefacts: ``report.json``, ``report.md``, ``plots/`` and per-example predictions.

Written by process 0 only. Every file is written atomically (``cervix_jax.files``), so a reader
never sees half a report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cervix_jax.files import atomic_path, atomic_write_json, atomic_write_text
from cervix_jax.train.metrics import classification_metrics


def save_predictions(
    path: str | os.PathLike,
    *,
    index: np.ndarray,
    label: np.ndarray,
    logits: np.ndarray,
    image_id: np.ndarray | None = None,
) -> None:
    """``predictions_<split>.npz``: ``index [N]``, ``label [N]``, ``logits [N, C]``,
    ``pred [N]`` (argmax), ``image_id [N]`` (when known), sorted by ``index``."""
    order = np.argsort(index, kind="stable")
    arrays = {
        "index": np.asarray(index)[order],
        "label": np.asarray(label)[order],
        "logits": np.asarray(logits, np.float32)[order],
        "pred": np.argmax(np.asarray(logits), axis=-1)[order],
    }
    if image_id is not None:
        arrays["image_id"] = np.asarray(image_id).astype(str)[order]
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def build_report(
    labels: np.ndarray,
    preds: np.ndarray,
    class_names: Sequence[str],
    *,
    checkpoint_step: int,
    extra: dict | None = None,
) -> dict:
    """The ``report.json`` dictionary (metric keys of ``classification_metrics`` plus
    ``checkpoint_step`` and whatever ``extra`` adds, e.g. split and model)."""
    report = classification_metrics(labels, preds, class_names)
    report["checkpoint_step"] = int(checkpoint_step)
    if extra:
        report.update(extra)
    return report


def report_markdown(report: dict, title: str = "Evaluation report") -> str:
    """The same numbers as ``report.json``, as Markdown tables."""
    names = report["class_names"]
    lines = [f"# {title}", ""]
    for key in ("model", "split", "variant", "fold", "workdir"):
        if key in report:
            lines.append(f"- {key}: `{report[key]}`")
    lines += [
        f"- checkpoint step: {report['checkpoint_step']}",
        f"- examples: {report['num_examples']}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {report['accuracy']:.4f} |",
        f"| balanced accuracy | {report['balanced_accuracy']:.4f} |",
        f"| macro F1 | {report['macro_f1']:.4f} |",
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        pc = report["per_class"][name]
        lines.append(
            f"| {name} | {pc['precision']:.4f} | {pc['recall']:.4f} | {pc['f1']:.4f} | "
            f"{pc['support']} |"
        )
    lines += [
        "",
        "## Confusion matrix (rows = truth, columns = prediction, counts)",
        "",
        "| truth \\ pred | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for name, row in zip(names, report["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(int(c)) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _pyplot():
    # Imported here on purpose: pyplot takes ~0.5 s to import and only process 0 plots, once,
    # at the end of a run; the file backend (Agg) must be chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str | os.PathLike):
    """Row-normalised confusion matrix (each truth row sums to 1) with counts annotated."""
    plt = _pyplot()

    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 1.5))
    im = ax.imshow(norm, vmin=0.0, vmax=1.0, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            color = "white" if norm[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n({int(cm[i, j])})",
                ha="center",
                va="center",
                fontsize=8,
                color=color,
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("Confusion matrix (row-normalised)")
    _savefig(fig, Path(path))
    plt.close(fig)


def plot_training_curves(history: Sequence[dict], path: str | os.PathLike) -> None:
    """Loss and accuracy per epoch (train and validation) from ``metrics.jsonl`` records."""
    plt = _pyplot()

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
        ax_acc.plot(epochs, [h[f"{split}_accuracy"] for h in history], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    _savefig(fig, Path(path))
    plt.close(fig)


def write_report(workdir: str | os.PathLike, report: dict, history: Sequence[dict]) -> None:
    """``report.json``, ``report.md``, ``plots/confusion_matrix.png`` and, when there is a
    history, ``plots/training_curves.png``."""
    workdir = Path(workdir)
    plots = workdir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    atomic_write_json(workdir / "report.json", report)
    atomic_write_text(workdir / "report.md", report_markdown(report))
    plot_confusion_matrix(
        np.asarray(report["confusion_matrix"]),
        report["class_names"],
        plots / "confusion_matrix.png",
    )
    if history:
        plot_training_curves(history, plots / "training_curves.png")
