"""cervix_jax.study.crossval: the per-fold table and the statistics over folds, against hand
computations and the per-fold reports."""

import re

import numpy as np
import pytest

from cervix_jax import study
from cervix_jax.study import StudyError
from cervix_jax.train import classification_metrics
from configs import default


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
    cv = study.summarize_folds(reports, ["x", "y"])
    assert cv["folds"] == [0, 1, 2]
    acc = cv["summary"]["accuracy"]
    assert acc["mean"] == pytest.approx(0.75)
    assert acc["std"] == pytest.approx(0.25)  # ddof=1
    # 95% t interval, 2 df (t = 4.303 in tables), clipped to [0, 1].
    assert acc["ci_low"] == pytest.approx(0.75 - 4.303 * 0.25 / np.sqrt(3), abs=1e-3)
    assert acc["ci_high"] == 1.0
    assert cv["per_fold"]["1"]["accuracy"] == 0.75
    assert cv["per_fold"]["2"]["checkpoint_step"] == 30
    # Pooled confusion matrix over the folds' test sets.
    assert cv["confusion_matrix_total"] == [[3, 2], [1, 6]]
    assert cv["num_examples_total"] == 12
    # Every mean is the mean of the per-fold reports' values.
    for key in study.SUMMARY_KEYS:
        per_fold = [reports[k][key] for k in range(3)]
        assert cv["summary"][key]["mean"] == pytest.approx(np.mean(per_fold))
    f1_y = [reports[k]["per_class"]["y"]["f1"] for k in range(3)]
    assert cv["summary"]["per_class_f1"]["y"]["mean"] == pytest.approx(np.mean(f1_y))
    md = study.cv_markdown(cv, "CV")
    assert "| 1 | 0.7500 |" in md and "0.7500 ± 0.2500 [0.1290, 1.0000]" in md


def test_single_fold_has_zero_std_and_no_interval():
    cv = study.summarize_folds({3: _report([0, 1], [0, 0], 5)}, ["x", "y"])
    acc = cv["summary"]["accuracy"]
    assert (acc["mean"], acc["std"], acc["ci_low"], acc["ci_high"]) == (0.5, 0.0, None, None)


def test_fold_config_shares_one_synthetic_replica(tmp_path):
    config = default.get_config("demo")
    fold = study.fold_config(config, 2, tmp_path)
    assert fold.data.fold == 2 and config.data.fold == 0
    assert fold.data.tfds_data_dir == str(tmp_path.absolute() / "tfds")


@pytest.mark.parametrize(
    "change, folds, message",
    [
        (dict(split_scheme="paper"), None, "needs 'kfold'"),
        (dict(num_folds=2), None, "K >= 3"),
        ({}, [5], "outside [0, 5)"),
    ],
)
def test_cross_validate_refuses_before_writing(tmp_path, change, folds, message):
    config = default.get_config()
    for key, value in change.items():
        config.data[key] = value
    with pytest.raises(StudyError, match=re.escape(message)):
        study.cross_validate(config, tmp_path / "cv", folds)
    assert not (tmp_path / "cv").exists()
