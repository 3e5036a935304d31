"""K-fold cross-validation: one training run per fold, then mean +- std over folds.

    python tools/cross_validate.py --config=configs/rca.py --workdir=workdirs/rca_cv \
        --config.data.manual_dir=/path/to/sipakmed [--folds=0,1,2,3,4]

Fold k tests on fold k and validates on fold k+1 (mod K); the run lives in ``WORKDIR/fold_k``
(re-running resumes unfinished folds and skips finished ones). ``WORKDIR/cv_report.json`` and
``cv_report.md`` hold per-fold metrics and their mean and sample standard deviation, the form
that makes model comparisons honest on 966 images.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags
    from ml_collections import config_flags

    from cervix_jax import runtime
    from cervix_jax.train import distributed
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py[:string]).", lock_config=True
)
flags.DEFINE_string("workdir", None, "Output directory; fold k trains in WORKDIR/fold_k.")
flags.DEFINE_string("folds", "", "Comma-separated folds to run (default: all K).")
distributed.define_flags()
flags.mark_flags_as_required(["config", "workdir"])

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")


def summarize(fold_reports: dict[int, dict], class_names) -> dict:
    """Per-fold metrics and mean / sample std (ddof=1; 0 for a single fold) over folds."""
    import numpy as np

    folds = sorted(fold_reports)
    per_fold = {
        str(k): {
            key: fold_reports[k][key] for key in (*SUMMARY_KEYS, "num_examples", "checkpoint_step")
        }
        for k in folds
    }
    for k in folds:
        per_fold[str(k)]["per_class_f1"] = {
            name: fold_reports[k]["per_class"][name]["f1"] for name in class_names
        }

    def stats(values):
        v = np.asarray(values, np.float64)
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    summary = {key: stats([fold_reports[k][key] for k in folds]) for key in SUMMARY_KEYS}
    summary["per_class_f1"] = {
        name: stats([fold_reports[k]["per_class"][name]["f1"] for k in folds])
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


def cv_markdown(cv: dict, title: str) -> str:
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
        "| **mean ± std** | "
        + " | ".join(f"{s[key]['mean']:.4f} ± {s[key]['std']:.4f}" for key in SUMMARY_KEYS)
        + " | | |"
    )
    lines += ["", "## Per-class F1 (mean ± std over folds)", "", "| class | F1 |", "|---|---|"]
    for name, v in s["per_class_f1"].items():
        lines.append(f"| {name} | {v['mean']:.4f} ± {v['std']:.4f} |")
    return "\n".join(lines) + "\n"


def _check_inputs(config, workdir: Path, folds) -> list[int]:
    """The folds to run; raises ``ConfigError`` (one line) for a config, ``--folds`` or
    ``--workdir`` that cross-validation cannot use, before any fold starts."""
    from cervix_jax.train import ConfigError, check_config

    if config.data.split_scheme != "kfold":
        raise ConfigError(
            f"config.data.split_scheme={config.data.split_scheme!r}: cross-validation needs "
            "'kfold'."
        )
    check_config(config)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir={workdir} is a file; give a directory.")
    num_folds = int(config.data.num_folds)
    if not folds:
        return list(range(num_folds))
    if not all(str(k).strip().isdigit() and int(k) < num_folds for k in folds):
        raise ConfigError(
            f"--folds={','.join(map(str, folds))}: expected fold numbers in [0, {num_folds}) "
            "(config.data.num_folds), comma-separated."
        )
    return [int(k) for k in folds]


def cross_validate(config, workdir: str | os.PathLike, folds=None) -> dict:
    """Trains (or resumes, or skips when finished) one run per fold; writes the CV report."""
    import jax

    from cervix_jax.data import resolved_data_config
    from cervix_jax.files import atomic_write_json, atomic_write_text
    from cervix_jax.train import train_and_evaluate

    workdir = Path(workdir)
    folds = _check_inputs(config, workdir, folds)
    num_folds = int(config.data.num_folds)
    reports = {}
    for k in folds:
        fold_config = config.copy_and_resolve_references()
        with fold_config.unlocked():
            fold_config.data.fold = k
            # One synthetic replica for all folds (in WORKDIR/tfds), not one per fold.
            fold_config.data.tfds_data_dir = resolved_data_config(config, workdir).tfds_data_dir
        fold_dir = workdir / f"fold_{k}"
        done = fold_dir / "report.json"
        if done.exists() and json.loads(done.read_text()).get("fold") == k:
            reports[k] = json.loads(done.read_text())
            continue
        if jax.process_index() == 0:
            print(f"=== fold {k} of {num_folds} -> {fold_dir}", flush=True)
        reports[k] = train_and_evaluate(fold_config, fold_dir)
    cv = summarize(reports, reports[folds[0]]["class_names"])
    cv["model"] = config.model.name
    cv["variant"] = config.data.variant
    if jax.process_index() == 0:
        atomic_write_json(workdir / "cv_report.json", cv)
        atomic_write_text(
            workdir / "cv_report.md",
            cv_markdown(cv, f"Cross-validation: {config.model.name} on {config.data.variant}"),
        )
        print(cv_markdown(cv, "Cross-validation"), flush=True)
    return cv


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    distributed.initialize_from_flags()
    from cervix_jax.train import reported_as_exit

    try:  # ml_collections defers an error loading the config file to its first use
        FLAGS.config.keys()
    except OSError as e:
        last = [line.strip() for line in str(e).splitlines() if line.strip()][-1:]
        print(f"error: --config: cannot load it ({''.join(last) or e})", file=sys.stderr)
        sys.exit(2)
    folds = [f for f in FLAGS.folds.split(",") if f.strip()]
    with reported_as_exit():
        cross_validate(FLAGS.config, FLAGS.workdir, folds)


if __name__ == "__main__":
    app.run(distributed.exit_at_once_on_failure(main))
