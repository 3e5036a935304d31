"""Study workdirs written by hand (report.json, predictions, attribution metrics) for the tests
of collect and the study page: numbers known in advance, no training."""

import json

import numpy as np

from cervix_jax import study
from cervix_jax.data import CLASS_NAMES
from cervix_jax.train import classification_metrics


def write_run(workdir, cell, labels, preds, localization=None):
    """A finished run of ``cell``: test report and predictions (image ids ``<fold>/<i>``) and,
    with ``localization`` (one value per image), the study's explanation."""
    run = cell.run_dir(workdir)
    run.mkdir(parents=True)
    labels, preds = np.asarray(labels), np.asarray(preds)
    report = classification_metrics(labels, preds, CLASS_NAMES)
    report.update(
        checkpoint_step=3,
        fold=cell.fold,
        model=cell.model,
        variant=cell.variant,
        synthetic=True,
        split="test",
    )
    (run / "report.json").write_text(json.dumps(report))
    ids = np.array([f"{CLASS_NAMES[y]}/{cell.fold}{i:02d}" for i, y in enumerate(labels)])
    logits = np.eye(len(CLASS_NAMES))[preds] * 3.0
    np.savez(
        run / "predictions_test.npz",
        index=np.arange(len(labels)) + 100 * cell.fold,
        label=labels,
        pred=preds,
        logits=logits,
        image_id=ids,
    )
    if localization is not None:
        per_image = {str(i): float(v) for i, v in zip(ids, localization, strict=True)}
        metrics = {
            "method": "ig",
            "steps": 50,
            "ig_method": "riemann_left",
            "baseline": "uniform",
            "num_baselines": 10,
            "target": "predicted",
            "score": "probability",
            "split": "test",
            "num_images": len(ids),
            "localization_cells": {"mean": float(np.mean(localization)), "per_image": per_image},
        }
        out = run / "attributions"
        out.mkdir()
        (out / "attribution_metrics.json").write_text(json.dumps(metrics))
    return run


def two_model_study(workdir, *, skip=()):
    """resnet50 vs densenet121 on 'full', K=3, folds 0..2. Every fold has 10 images (2 per
    class); resnet50 gets 5 right and densenet121 8 (a difference of exactly 0.3 on each fold),
    and densenet121's localization is 0.5 higher on every image. Cells named in ``skip`` are
    left out."""
    spec = study.make_spec(models_text="resnet50,densenet121", variants_text="full", num_folds=3)
    labels = np.repeat(np.arange(5), 2)
    for k in spec.folds:
        for model, right, shift in (("resnet50", 5, 0.0), ("densenet121", 8, 0.5)):
            cell = study.Cell(model, "full", k)
            if cell.name in skip:
                continue
            preds = labels.copy()
            preds[right:] = (labels[right:] + 1) % 5
            localization = 1.0 + 0.1 * np.arange(10) + 0.2 * k + shift
            write_run(workdir, cell, labels, preds, localization)
    return spec
