"""Evaluation of a split: per-example outputs gathered on the host, and the report written from
them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np
from jax.sharding import Mesh

from cervix_jax.data import DataModule
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train import report as report_lib
from cervix_jax.train.builders import eval_batches
from cervix_jax.train.errors import TrainingError
from cervix_jax.train.workdir import is_writer, read_history

EVAL_DEVICE_KEYS = ("image", "label", "mask", "index")


def run_evaluation(
    eval_step: Callable,
    variables: dict,
    data: DataModule,
    split: str,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
) -> dict[str, np.ndarray]:
    """Per-example outputs of ``split`` on the host of every process, padding removed, sorted
    by record index: ``index [N]``, ``label [N]``, ``logits [N, C]``, ``loss [N]``."""
    mesh_lib.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
    outs = []
    for batch in eval_batches(config, data, split):
        keys = [k for k in EVAL_DEVICE_KEYS if k in batch]
        outs.append(eval_step(variables, mesh_lib.global_batch(batch, mesh, keys)))
    host = mesh_lib.to_host(outs)
    outputs = {k: np.concatenate([o[k] for o in host]) for k in host[0]}
    keep = outputs.pop("mask").astype(bool)
    outputs = {k: v[keep] for k, v in outputs.items()}
    order = np.argsort(outputs["index"], kind="stable")
    outputs = {k: v[order] for k, v in outputs.items()}
    expected = data.num_examples(split)
    if len(outputs["label"]) != expected:
        raise TrainingError(
            f"evaluation of split {split!r} saw {len(outputs['label'])} examples, expected "
            f"{expected}: the evaluation iterator must yield each example exactly once."
        )
    return outputs


def loss_and_accuracy(outputs: dict[str, np.ndarray]) -> tuple[float, float]:
    """Mean loss and accuracy of `run_evaluation`'s outputs."""
    preds = outputs["logits"].argmax(-1)
    return float(outputs["loss"].mean()), float((preds == outputs["label"]).mean())


def final_report(
    workdir: Path,
    config: ml_collections.ConfigDict,
    eval_step: Callable,
    variables: dict,
    data: DataModule,
    mesh: Mesh,
    *,
    step: int,
    split: str = "test",
) -> dict:
    """Evaluates ``split``; process 0 writes predictions, ``report.json``/``.md`` and plots."""
    outputs = run_evaluation(eval_step, variables, data, split, config, mesh)
    preds = outputs["logits"].argmax(-1)
    extra = {
        "split": split,
        "model": config.model.name,
        "variant": config.data.variant,
        "fold": int(config.data.fold),
        "synthetic": bool(config.data.synthetic),
        "loss": float(outputs["loss"].mean()),
    }
    report = report_lib.build_report(
        outputs["label"], preds, data.class_names, checkpoint_step=step, extra=extra
    )
    if is_writer():
        image_id = np.asarray(data.metadata.image_ids)[outputs["index"]]
        report_lib.save_predictions(
            workdir / f"predictions_{split}.npz",
            index=outputs["index"],
            label=outputs["label"],
            logits=outputs["logits"],
            image_id=image_id,
        )
        report_lib.write_report(workdir, report, read_history(workdir))
    return report
