"""Classification metrics from per-example predictions, in plain numpy.

Everything here runs on the host on the gathered predictions of a whole split, so the numbers in
``report.json`` can be recomputed by anyone from ``predictions_<split>.npz``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[num_classes, num_classes] int64``: rows = truth, columns = prediction."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    preds = np.asarray(preds, dtype=np.int64).reshape(-1)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in shape")
    for name, arr in (("labels", labels), ("preds", preds)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} outside [0, {num_classes}): {np.unique(arr)}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # Precision of a never-predicted class (or recall of an absent one) is reported as 0, the
    # convention of scikit-learn's zero_division=0.
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows = truth).

    ``cm`` is ``[C, C]`` or a stack ``[..., C, C]`` (e.g. bootstrap replicates); the scores
    are ``[C]`` or ``[..., C]``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support.astype(np.int64),
    }


def classification_metrics(
    labels: np.ndarray, preds: np.ndarray, class_names: Sequence[str]
) -> dict:
    """All report metrics, JSON-ready.

    Args:
      labels: ``[N] int`` true classes.
      preds: ``[N] int`` predicted classes.
      class_names: names in label order.

    Returns:
      ``accuracy``, ``balanced_accuracy`` (mean recall over classes present in ``labels``),
      ``macro_f1`` (mean F1 over all classes), ``per_class`` (name -> precision, recall, f1,
      support), ``confusion_matrix`` (rows = truth, counts), ``class_names``, ``num_examples``.
    """
    num_classes = len(class_names)
    cm = confusion_matrix(labels, preds, num_classes)
    scores = per_class_scores(cm)
    n = int(cm.sum())
    present = scores["support"] > 0
    return {
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "balanced_accuracy": float(scores["recall"][present].mean()) if present.any() else 0.0,
        "macro_f1": float(scores["f1"].mean()),
        "per_class": {
            name: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
        "num_examples": n,
    }
