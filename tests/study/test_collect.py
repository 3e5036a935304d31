"""cervix_jax.study.collect on hand-written runs: statistics recomputed from the per-fold
reports, paired comparisons with known differences, missing cells, the three files."""

import json

import numpy as np
import pytest

from cervix_jax import study
from cervix_jax.study import StudyError
from tests.study.fake_study import two_model_study, write_run


def _group(result, model):
    return next(g for g in result["groups"] if g["model"] == model)


def test_fold_means_are_those_of_the_per_fold_reports(tmp_path):
    spec = two_model_study(tmp_path)
    result = study.collect(tmp_path, spec)
    assert result["missing"] == []
    for model in spec.models:
        group = _group(result, model)
        reports = [
            json.loads((study.Cell(model, "full", k).run_dir(tmp_path) / "report.json").read_text())
            for k in spec.folds
        ]
        for key in study.SUMMARY_KEYS:
            values = [r[key] for r in reports]
            assert group["summary"][key]["mean"] == pytest.approx(np.mean(values))
            assert group["summary"][key]["std"] == pytest.approx(np.std(values, ddof=1))
        assert group["num_test_images"] == 30
    # Localization: per fold the mean over its images (1.45 + 0.2 k + shift), then over folds.
    dense = _group(result, "densenet121")["attribution"]["localization_cells"]
    assert dense["mean"] == pytest.approx(1.45 + 0.2 + 0.5)
    assert dense["std"] == pytest.approx(0.2)
    assert _group(result, "resnet50")["paper"]["accuracy"] == 0.8515


def test_paired_comparisons_with_known_differences(tmp_path):
    spec = two_model_study(tmp_path)
    result = study.collect(tmp_path, spec)
    by_metric = {c["metric"]: c for c in result["comparisons"]}
    assert set(by_metric) == {"accuracy", "balanced_accuracy", "macro_f1", "localization_cells"}
    acc = by_metric["accuracy"]
    assert (acc["a"], acc["b"], acc["folds"]) == ("resnet50", "densenet121", [0, 1, 2])
    assert acc["paired_t"]["mean"] == pytest.approx(0.3)
    assert acc["paired_t"]["ci_low"] == pytest.approx(0.3)  # the same difference on each fold
    assert acc["supported"] and acc["verdict"] == "densenet121 better"
    assert acc["bootstrap"]["mean"] == pytest.approx(0.3)
    assert acc["bootstrap"]["ci_low"] < 0.3 < acc["bootstrap"]["ci_high"]  # images resampled
    loc = by_metric["localization_cells"]
    assert loc["paired_t"]["mean"] == pytest.approx(0.5)
    assert loc["bootstrap"]["ci_low"] == pytest.approx(0.5)  # a shift of 0.5 on every image
    assert loc["verdict"] == "densenet121 better"


def test_missing_cells_are_listed_and_left_out(tmp_path):
    spec = two_model_study(tmp_path, skip=("resnet50/full/2",))
    (study.Cell("resnet50", "full", 2).run_dir(tmp_path) / "checkpoints").mkdir(parents=True)
    result = study.collect(tmp_path, spec)
    assert result["missing"] == ["resnet50/full/2"]
    assert result["runs"]["resnet50/full/2"]["status"] == "interrupted"
    assert _group(result, "resnet50")["folds"] == [0, 1]
    assert all(c["folds"] == [0, 1] for c in result["comparisons"])


def test_runs_of_one_fold_must_share_their_test_images(tmp_path):
    spec = two_model_study(tmp_path, skip=("densenet121/full/0",))
    labels = np.repeat(np.arange(5), 2)[::-1]  # other images in the same fold
    write_run(tmp_path, study.Cell("densenet121", "full", 0), labels, labels)
    with pytest.raises(StudyError, match="tested different images"):
        study.collect(tmp_path, spec)


def test_write_study_files(tmp_path):
    spec = two_model_study(tmp_path)
    result = study.collect(tmp_path, spec)
    study.write_study(tmp_path, result)
    assert json.loads((tmp_path / "study.json").read_text())["groups"][0]["model"] == "resnet50"
    md = (tmp_path / "study.md").read_text()
    assert "| densenet121 | 0.8000 ± 0.0000 [0.8000, 0.8000] (3 folds, 30 images) |" in md
    assert "0.8515 (1 split, 101 test images)" in md
    assert "densenet121 better" in md
    html = (tmp_path / "study.html").read_text()
    assert "paper: 85.15%" in html and "study.html" not in html


@pytest.mark.parametrize(
    "t, boot, higher, expected",
    [
        ((-0.05, -0.05), (-0.2, 0.1), True, ("no difference shown", False)),  # agreeing folds
        ((-0.3, -0.01), (-0.2, -0.02), True, ("a better", True)),
        ((0.01, 0.3), (0.02, 0.2), False, ("a better", True)),  # b higher, lower is better
        ((0.01, 0.3), (0.02, 0.2), None, ("b higher", True)),
        ((-0.1, 0.3), (0.02, 0.2), True, ("no difference shown", False)),
        ((None, None), None, True, ("too few folds", False)),
    ],
)
def test_verdict_needs_both_intervals(t, boot, higher, expected):
    test = {"corrected_ci_low": t[0], "corrected_ci_high": t[1]}
    bootstrap = None if boot is None else {"ci_low": boot[0], "ci_high": boot[1]}
    assert study.verdict(test, bootstrap, "a", "b", higher) == expected
