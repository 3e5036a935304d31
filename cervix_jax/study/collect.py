"""Assembling a study from whatever runs have finished: ``study.json``, ``.md`` and ``.html``.

Reads, per cell, the run's ``report.json``, ``predictions_test.npz`` and the study's
explanation (``attributions/attribution_metrics.json``); computes nothing with a model. Cells
not finished are listed as missing (with what is there: an interrupted training, a run not yet
explained), and the statistics use the folds that are there.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path

import jax
import numpy as np

from cervix_jax import files, reports
from cervix_jax.study import statistics
from cervix_jax.study.crossval import SUMMARY_KEYS, summarize_folds
from cervix_jax.study.errors import StudyError
from cervix_jax.study.grid import Cell, StudySpec
from cervix_jax.study.markdown import study_markdown
from cervix_jax.study.paper import paper_reference
from cervix_jax.study.runner import ATTRIBUTIONS

# Attribution metrics not compared between models: properties of the method, not of the model.
NOT_COMPARED = ("completeness_error", "sanity_spearman")


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_run(spec: StudySpec, cell: Cell, workdir: Path) -> dict:
    """A cell's files: ``report`` and ``attribution`` (None when absent) and its ``status``:
    ``done``, ``not explained``, ``interrupted`` (checkpoints, no report) or ``missing``."""
    run_dir = cell.run_dir(workdir)
    report = _read_json(run_dir / "report.json")
    attribution = _read_json(run_dir / ATTRIBUTIONS / "attribution_metrics.json")
    if report is not None and (attribution is not None or not spec.explain.enabled):
        status = "done"
    elif report is not None:
        status = "not explained"
    elif (run_dir / "checkpoints").is_dir():
        status = "interrupted"
    else:
        status = "missing"
    config = _read_json(run_dir / "config.json") or {}
    return {
        "cell": cell,
        "dir": run_dir,
        "report": report,
        "attribution": attribution,
        "status": status,
        "init_from": config.get("init_from") or None,
    }


def _attribution_mean(metrics: dict, key: str) -> float | None:
    value = metrics.get(key, {}).get("mean")
    return float(value) if value is not None and math.isfinite(value) else None


def group_summary(spec: StudySpec, runs: dict[Cell, dict], model: str, variant: str) -> dict:
    """Statistics over the finished folds of (model, variant): classification metrics and the
    mean of each attribution metric per fold, as mean, sd and 95% t interval."""
    done = {
        c.fold: runs[c]
        for c in runs
        if (c.model, c.variant) == (model, variant) and runs[c]["report"] is not None
    }
    # What the runs started from (their config.json), not what this command would give them.
    inits = sorted({r["init_from"] or "" for r in done.values()}) or [spec.init_for(model)]
    init_from = inits[0] if len(inits) == 1 else "mixed: " + ", ".join(i or "none" for i in inits)
    out = {
        "model": model,
        "variant": variant,
        "folds": sorted(done),
        "init_from": init_from or None,
        "paper": paper_reference(model, variant),
    }
    if not done:
        return {**out, "summary": None, "attribution": {}, "num_test_images": 0}
    reports_by_fold = {k: r["report"] for k, r in done.items()}
    cv = summarize_folds(reports_by_fold, next(iter(reports_by_fold.values()))["class_names"])
    explained = [r["attribution"] for r in done.values() if r["attribution"] is not None]
    keys = reports.per_image_keys(explained[0]) if explained else []
    attribution = {
        key: statistics.describe([_attribution_mean(m, key) for m in explained]) for key in keys
    }
    return {
        **out,
        "summary": cv["summary"],
        "per_fold": cv["per_fold"],
        "num_test_images": cv["num_examples_total"],
        "attribution": attribution,
        "explained_folds": len(explained),
    }


def _predictions(run: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(run["dir"] / "predictions_test.npz") as npz:
        return npz["index"], npz["label"], npz["pred"]


def _classification_data(run_a: dict, run_b: dict):
    """Per-image (labels, preds) of both runs of one fold, checked to be the same images."""
    index_a, labels_a, preds_a = _predictions(run_a)
    index_b, labels_b, preds_b = _predictions(run_b)
    if not np.array_equal(index_a, index_b) or not np.array_equal(labels_a, labels_b):
        raise StudyError(
            f"{run_a['dir']} and {run_b['dir']} tested different images: runs of one fold must "
            "share the data and split settings (--config.data.*)."
        )
    return (labels_a, preds_a), (labels_b, preds_b)


def _attribution_data(run_a: dict, run_b: dict, key: str):
    """Per-image values of ``key`` of both runs on the images both explained (finite in both)."""
    a = run_a["attribution"][key]["per_image"]
    b = run_b["attribution"][key]["per_image"]
    ids = sorted(i for i in a if i in b and _finite(a[i]) and _finite(b[i]))
    return np.array([a[i] for i in ids], np.float64), np.array([b[i] for i in ids], np.float64)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def verdict(
    test: dict, boot: dict | None, a: str, b: str, higher_is_better: bool | None
) -> tuple[str, bool]:
    """A sentence on ``b - a`` and whether it is supported: the (corrected, when there) t
    interval and the bootstrap interval both exclude 0, on the same side. Both, because each
    misses what the other sees: with few folds whose differences happen to agree, the t
    interval collapses while the test images still leave room; the bootstrap cannot see
    beyond the K folds."""
    low = test.get("corrected_ci_low", test.get("ci_low"))
    high = test.get("corrected_ci_high", test.get("ci_high"))
    if low is None:
        return "too few folds", False
    intervals = [(low, high)] + ([(boot["ci_low"], boot["ci_high"])] if boot else [])
    if not (all(lo > 0.0 for lo, _ in intervals) or all(hi < 0.0 for _, hi in intervals)):
        return "no difference shown", False
    b_higher = low > 0.0
    if higher_is_better is None:
        return (f"{b} higher" if b_higher else f"{a} higher"), True
    return (f"{b} better" if b_higher == higher_is_better else f"{a} better"), True


def compare(spec: StudySpec, run_a: list[dict], run_b: list[dict], metric: str) -> dict:
    """Paired comparison of two models on their common folds for one metric: paired t (plain
    and corrected) over the fold values, and the bootstrap over folds and images."""
    is_classification = metric in SUMMARY_KEYS
    if is_classification:
        values_a = [r["report"][metric] for r in run_a]
        values_b = [r["report"][metric] for r in run_b]
        data = [_classification_data(ra, rb) for ra, rb in zip(run_a, run_b, strict=True)]
        num_classes = len(run_a[0]["report"]["class_names"])
        statistic = statistics.classification_statistic(metric, num_classes)
    else:
        # Folds where no image has a finite value in both runs drop out of this metric.
        data = [_attribution_data(ra, rb, metric) for ra, rb in zip(run_a, run_b, strict=True)]
        data = [d for d in data if len(d[0])]
        values_a = [float(np.mean(d[0])) for d in data]
        values_b = [float(np.mean(d[1])) for d in data]
        statistic = statistics.mean_statistic
    ratio = 1.0 / (spec.num_folds - 2)  # n_test / n_train: one test fold, K - 2 training folds
    t = statistics.paired_t(values_a, values_b, test_train_ratio=ratio)
    boot = None
    if data:
        boot = statistics.paired_bootstrap(
            [d[0] for d in data],
            [d[1] for d in data],
            statistic,
            num_samples=spec.bootstrap_samples,
            seed=spec.seed,
        )
    return {"paired_t": t, "bootstrap": boot, "a_values": values_a, "b_values": values_b}


def comparisons(spec: StudySpec, runs: dict[Cell, dict]) -> list[dict]:
    """Every pair of models (``b`` after ``a`` in ``--models``) on every variant, for every
    classification metric and every attribution metric both have, on their common folds."""
    out = []
    for variant in spec.variants:
        for a, b in itertools.combinations(spec.models, 2):
            folds = [
                k
                for k in spec.folds
                if all(runs[Cell(m, variant, k)]["report"] is not None for m in (a, b))
            ]
            if not folds:
                continue
            run_a = [runs[Cell(a, variant, k)] for k in folds]
            run_b = [runs[Cell(b, variant, k)] for k in folds]
            explained = all(r["attribution"] is not None for r in run_a + run_b)
            keys = list(SUMMARY_KEYS)
            if explained:
                shared = set(reports.per_image_keys(run_a[0]["attribution"]))
                for r in run_a + run_b:
                    shared &= set(reports.per_image_keys(r["attribution"]))
                keys += [k for k in reports.ordered_metrics(shared) if k not in NOT_COMPARED]
            for metric in keys:
                result = compare(spec, run_a, run_b, metric)
                info = reports.metric_info(metric)
                text, supported = verdict(
                    result["paired_t"], result["bootstrap"], a, b, info.higher_is_better
                )
                out.append(
                    {
                        "variant": variant,
                        "a": a,
                        "b": b,
                        "metric": metric,
                        "folds": folds,
                        **result,
                        "verdict": text,
                        "supported": supported,
                    }
                )
    return out


def collect(workdir: str | os.PathLike, spec: StudySpec) -> dict:
    """The ``study.json`` content of ``workdir`` for the grid of ``spec``."""
    workdir = Path(workdir)
    runs = {cell: load_run(spec, cell, workdir) for cell in spec.cells()}
    first = next((r["report"] for r in runs.values() if r["report"] is not None), None)
    groups = [group_summary(spec, runs, m, v) for m in spec.models for v in spec.variants]
    return {
        "spec": spec.to_dict(),
        "class_names": first["class_names"] if first else [],
        "synthetic": bool(first.get("synthetic")) if first else None,
        "groups": groups,
        "comparisons": comparisons(spec, runs),
        "runs": {
            cell.name: {
                "status": r["status"],
                "dir": os.path.relpath(r["dir"], workdir),
                "accuracy": r["report"]["accuracy"] if r["report"] else None,
                "num_test_images": r["report"]["num_examples"] if r["report"] else None,
            }
            for cell, r in runs.items()
        },
        "missing": [c.name for c, r in runs.items() if r["status"] != "done"],
        "confidence": statistics.CONFIDENCE,
        "methods": statistics.METHODS,
    }


def write_study(workdir: str | os.PathLike, study: dict) -> None:
    """``study.json``, ``study.md`` and ``study.html`` in ``workdir`` (process 0)."""
    if jax.process_index() != 0:
        return
    workdir = Path(workdir)
    files.atomic_write_json(workdir / "study.json", study)
    files.atomic_write_text(workdir / "study.md", study_markdown(study))
    reports.write_study_report(workdir, study)
