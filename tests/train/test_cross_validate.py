"""tools/cross_validate.py: the per-fold table and mean +- std, against hand computations."""

import numpy as np
import pytest

from cervix_jax.train.metrics import classification_metrics
from tools.cross_validate import cv_markdown, summarize


def _report(labels, preds, step):
    r = classification_metrics(np.array(labels), np.array(preds), ["x", "y"])
    r["checkpoint_step"] = step
    return r


def test_summary_mean_and_sample_std():
    reports = {
        0: _report([0, 0, 1, 1], [0, 0, 1, 1], 10),  # accuracy 1
        1: _report([0, 0, 1, 1], [0, 1, 1, 1], 20),  # accuracy 0.75
        2: _report([0, 1, 1, 1], [1, 1, 1, 0], 30),  # accuracy 0.5
    }
    cv = summarize(reports, ["x", "y"])
    assert cv["folds"] == [0, 1, 2]
    assert cv["summary"]["accuracy"]["mean"] == pytest.approx(0.75)
    assert cv["summary"]["accuracy"]["std"] == pytest.approx(0.25)  # ddof=1
    assert cv["per_fold"]["1"]["accuracy"] == 0.75
    assert cv["per_fold"]["2"]["checkpoint_step"] == 30
    # Pooled confusion matrix over the folds' test sets.
    assert cv["confusion_matrix_total"] == [[3, 2], [1, 6]]
    assert cv["num_examples_total"] == 12
    f1_y = [reports[k]["per_class"]["y"]["f1"] for k in range(3)]
    assert cv["summary"]["per_class_f1"]["y"]["mean"] == pytest.approx(np.mean(f1_y))
    md = cv_markdown(cv, "CV")
    assert "| 1 | 0.7500 |" in md and "0.7500 ± 0.2500" in md


def test_single_fold_has_zero_std():
    cv = summarize({3: _report([0, 1], [0, 0], 5)}, ["x", "y"])
    assert cv["summary"]["accuracy"] == {"mean": 0.5, "std": 0.0}
