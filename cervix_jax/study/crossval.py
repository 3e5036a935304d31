"""K-fold cross-validation of one config: one training run per fold, then statistics over folds.

Fold k tests on fold k and validates on fold k+1 (mod K) (``cervix_jax.data.split_indices``).
A fold's run is skipped when it has finished (``report.json`` of that fold, with a config the
run can take: ``cervix_jax.train.check_resumable``), resumed when it was interrupted (the
training loop resumes from its latest checkpoint), and started otherwise.
``tools/cross_validate.py`` and the study grid (``cervix_jax.study.runner``) both run folds
through `run_fold`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np

from cervix_jax import files, reports, train
from cervix_jax.data import resolved_data_config
from cervix_jax.study.errors import StudyError
from cervix_jax.study.statistics import describe

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")


def fold_config(
    config: ml_collections.ConfigDict, fold: int, data_workdir: str | os.PathLike
) -> ml_collections.ConfigDict:
    """``config`` for test fold ``fold``; a synthetic replica is shared by all the folds (and
    grid cells) of ``data_workdir`` (in ``data_workdir/tfds``), not made once per run."""
    out = config.copy_and_resolve_references()
    with out.unlocked():
        out.data.fold = int(fold)
        out.data.tfds_data_dir = resolved_data_config(config, data_workdir).tfds_data_dir
    return out


def finished_report(config: ml_collections.ConfigDict, run_dir: str | os.PathLike) -> dict | None:
    """The run's ``report.json`` if ``run_dir`` holds a finished run of ``config``, else None.

    Raises:
      TrainingError: ``run_dir`` holds checkpoints of a run with other settings.
    """
    train.check_resumable(config, run_dir)
    path = Path(run_dir) / "report.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    return report if report.get("fold") == int(config.data.fold) else None


def run_fold(config: ml_collections.ConfigDict, run_dir: str | os.PathLike) -> dict:
    """Trains (or resumes) ``config`` in ``run_dir`` unless it has finished; returns its test
    report. A run trained here also gets its ``report.html``."""
    report = finished_report(config, run_dir)
    if report is not None:
        return report
    report = train.train_and_evaluate(config, run_dir)
    if jax.process_index() == 0:
        reports.write_run_report(run_dir)
    return report


def check_folds(config: ml_collections.ConfigDict, folds: Sequence[int] | None) -> list[int]:
    """The folds to run (all K when ``folds`` is empty), checked against the config."""
    num_folds = int(config.data.num_folds)
    if config.data.split_scheme != "kfold":
        raise StudyError(
            f"config.data.split_scheme={config.data.split_scheme!r}: cross-validation needs "
            "'kfold'."
        )
    if num_folds < 3:
        raise StudyError(
            f"config.data.num_folds={num_folds}: K-fold runs need K >= 3 (test fold, validation "
            "fold and at least one training fold)."
        )
    folds = list(range(num_folds)) if not folds else [int(k) for k in folds]
    bad = [k for k in folds if not 0 <= k < num_folds]
    if bad:
        raise StudyError(f"folds {bad} outside [0, {num_folds}) (config.data.num_folds).")
    return folds


def summarize_folds(fold_reports: dict[int, dict], class_names: Sequence[str]) -> dict:
    """Per-fold metrics and, over folds, mean, sample std (ddof=1; 0 for one fold) and a 95% t
    interval clipped to [0, 1] (``statistics.describe``) of each metric and each class's F1."""
    folds = sorted(fold_reports)
    per_fold = {}
    for k in folds:
        r = fold_reports[k]
        per_fold[str(k)] = {key: r[key] for key in (*SUMMARY_KEYS, "num_examples")}
        per_fold[str(k)]["checkpoint_step"] = r.get("checkpoint_step")
        per_fold[str(k)]["per_class_f1"] = {n: r["per_class"][n]["f1"] for n in class_names}
    unit = (0.0, 1.0)
    summary = {
        key: describe([fold_reports[k][key] for k in folds], bounds=unit) for key in SUMMARY_KEYS
    }
    summary["per_class_f1"] = {
        name: describe([fold_reports[k]["per_class"][name]["f1"] for k in folds], bounds=unit)
        for name in class_names
    }
    total_cm = np.sum([np.asarray(fold_reports[k]["confusion_matrix"]) for k in folds], axis=0)
    return {
        "folds": folds,
        "per_fold": per_fold,
        "summary": summary,
        "confusion_matrix_total": total_cm.tolist(),
        "class_names": list(class_names),
        "num_examples_total": int(total_cm.sum()),
    }


def format_interval(stats: dict, digits: int = 4) -> str:
    """``mean ± std [low, high]`` of a `describe` dict (``n/a`` without values)."""
    if stats.get("mean") is None:
        return "n/a"
    text = f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    if stats.get("ci_low") is not None:
        text += f" [{stats['ci_low']:.{digits}f}, {stats['ci_high']:.{digits}f}]"
    return text


def cv_markdown(cv: dict, title: str) -> str:
    """``cv_report.md``: the per-fold table and the statistics over folds."""
    lines = [
        f"# {title}",
        "",
        f"Folds: {cv['folds']}; test examples in total: {cv['num_examples_total']}.",
        "",
        "| fold | accuracy | balanced accuracy | macro F1 | test examples | best step |",
        "|---|---|---|---|---|---|",
    ]
    for k in cv["folds"]:
        f = cv["per_fold"][str(k)]
        lines.append(
            f"| {k} | {f['accuracy']:.4f} | {f['balanced_accuracy']:.4f} | "
            f"{f['macro_f1']:.4f} | {f['num_examples']} | {f['checkpoint_step']} |"
        )
    s = cv["summary"]
    lines.append(
        "| **mean ± std [95% CI]** | "
        + " | ".join(format_interval(s[key]) for key in SUMMARY_KEYS)
        + " | | |"
    )
    lines += [
        "",
        f"95% CI: Student-t over the {len(cv['folds'])} fold values; folds share training "
        "data, so it is optimistic (cervix_jax.study.statistics).",
        "",
        "## Per-class F1 (mean ± std [95% CI] over folds)",
        "",
        "| class | F1 |",
        "|---|---|",
    ]
    for name, v in s["per_class_f1"].items():
        lines.append(f"| {name} | {format_interval(v)} |")
    return "\n".join(lines) + "\n"


def cross_validate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    folds: Sequence[int] | None = None,
) -> dict:
    """Trains (or resumes, or skips when finished) one run per fold in ``WORKDIR/fold_k``;
    process 0 writes ``cv_report.json`` and ``cv_report.md``. Returns the report."""
    workdir = Path(workdir)
    folds = check_folds(config, folds)
    # Refused before the first fold starts (one line naming the field or folder).
    train.check_config(config)
    if workdir.exists() and not workdir.is_dir():
        raise StudyError(f"--workdir={workdir} is a file; give a folder.")
    reports_by_fold = {}
    for k in folds:
        run_dir = workdir / f"fold_{k}"
        if jax.process_index() == 0:
            print(f"=== fold {k} of {config.data.num_folds} -> {run_dir}", flush=True)
        reports_by_fold[k] = run_fold(fold_config(config, k, workdir), run_dir)
    cv = summarize_folds(reports_by_fold, reports_by_fold[folds[0]]["class_names"])
    cv["model"] = config.model.name
    cv["variant"] = config.data.variant
    if jax.process_index() == 0:
        title = f"Cross-validation: {config.model.name} on {config.data.variant}"
        files.atomic_write_json(workdir / "cv_report.json", cv)
        files.atomic_write_text(workdir / "cv_report.md", cv_markdown(cv, title))
    return cv
