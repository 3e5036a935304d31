"""Metrics against numbers computed by hand."""

import numpy as np
import pytest

from cervix_jax.train.metrics import classification_metrics, confusion_matrix


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_metrics_by_hand():
    # truth:  a a a b b c ; pred: a a b b c c ; class d never occurs nor is predicted.
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(labels, preds, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recalls: a 2/3, b 1/2, c 1/1; d absent -> not in the balanced mean.
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precisions: a 2/2, b 1/2, c 1/2, d 0 (never predicted).
    f1_a = 2 * 1 * (2 / 3) / (1 + 2 / 3)
    f1_b = 0.5
    f1_c = 2 * 0.5 * 1 / 1.5
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": f1_a, "support": 3}
    )
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b + f1_c + 0.0) / 4)
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m["num_examples"] == 6
    assert m["class_names"] == ["a", "b", "c", "d"]


def test_out_of_range_label_is_refused():
    with pytest.raises(ValueError, match="labels outside"):
        confusion_matrix([0, 5], [0, 1], 5)
