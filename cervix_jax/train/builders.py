"""The parts of a run that its config determines: model, data iterators and jitted steps, and
`Run`, what training and evaluation share."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from cervix_jax import data as data_lib
from cervix_jax import models
from cervix_jax.data import DataModule
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train.errors import TrainingError
from cervix_jax.train.step import AugmentFn, NormalizeFn, make_eval_step, make_train_step


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """``config.model`` from the model registry."""
    options = dict(config.model.get("options", {}) or {})
    return models.create_model(
        config.model.name,
        num_classes,
        dropout_rate=config.model.dropout_rate,
        dtype=config.model.dtype,
        **options,
    )


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``N / (K * n_c)`` per class (sklearn's 'balanced'); absent classes get weight 0."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
    w = np.divide(len(labels), num_classes * counts, out=np.zeros_like(counts), where=counts > 0)
    return w.astype(np.float32)


def train_batches(config: ml_collections.ConfigDict, data: DataModule, start_step: int = 0):
    """The data wing's training iterator over ``data``'s training split: this process's rows
    of global batch ``start_step``, ``start_step + 1``, ... (a grain iterator, checkpointable)."""
    return data_lib.train_iterator(
        data.source,
        data.splits["train"],
        image_size=int(config.data.image_size),
        global_batch_size=int(config.batch_size),
        seed=int(config.seed),
        num_workers=int(config.data.num_workers),
        prefetch_buffer_size=int(config.data.prefetch_buffer_size),
        start_step=int(start_step),
    )


def eval_batches(config: ml_collections.ConfigDict, data: DataModule, split: str):
    """The data wing's evaluation iterator over ``split``: every example once across
    processes, the last batch padded (``mask`` False)."""
    return data_lib.eval_iterator(
        data.source,
        data.splits[split],
        image_size=int(config.data.image_size),
        global_batch_size=int(config.eval_batch_size),
        num_workers=int(config.data.num_workers),
        prefetch_buffer_size=int(config.data.prefetch_buffer_size),
    )


@dataclasses.dataclass(frozen=True)
class Parts:
    """Pieces of a run given instead of built from its config (tests, experiments); each None
    is built: ``data`` by `cervix_jax.data.build_data_module`, ``model`` by `build_model`,
    ``augment_fn`` from ``config.data.augment``, ``normalize_fn`` is the data wing's."""

    data: DataModule | None = None
    model: nn.Module | None = None
    augment_fn: AugmentFn | None = None
    normalize_fn: NormalizeFn | None = None


@dataclasses.dataclass(frozen=True)
class Run:
    """What training and evaluation share: the config, the workdir and the parts of the run
    (`prepare_run`), among them the jitted evaluation step (made once: jit caches per
    function object)."""

    config: ml_collections.ConfigDict
    workdir: Path
    mesh: Mesh
    data: DataModule
    model: nn.Module
    augment_fn: AugmentFn
    normalize_fn: NormalizeFn
    eval_step: Callable[[dict, dict], dict]

    def steps_per_epoch(self) -> int:
        """Training steps per epoch; refuses batch sizes that the devices or the training
        split cannot take."""
        config = self.config
        mesh_lib.check_batch_size(config.batch_size, self.mesh)
        mesh_lib.check_batch_size(config.eval_batch_size, self.mesh, "config.eval_batch_size")
        num_train = self.data.num_examples("train")
        steps = data_lib.steps_per_epoch(num_train, config.batch_size)
        if steps == 0:
            raise TrainingError(
                f"the training split has {num_train} examples, fewer than config.batch_size="
                f"{config.batch_size}; lower --config.batch_size."
            )
        return steps


def _config_augment(config: ml_collections.ConfigDict) -> AugmentFn:
    augment_config = config.data.augment
    return lambda key, images: data_lib.augment(key, images, augment_config)


def prepare_run(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, parts: Parts | None = None
) -> Run:
    """The mesh over all devices, the data, model and image functions of ``config`` (unless
    ``parts`` gives them), and the jitted evaluation step."""
    workdir, parts = Path(workdir), parts or Parts()
    mesh = mesh_lib.make_mesh()
    data = parts.data if parts.data is not None else data_lib.build_data_module(config, workdir)
    model = parts.model if parts.model is not None else build_model(config, len(data.class_names))
    augment_fn = parts.augment_fn if parts.augment_fn is not None else _config_augment(config)
    normalize_fn = parts.normalize_fn if parts.normalize_fn is not None else data_lib.normalize
    eval_step = make_eval_step(model, mesh, normalize_fn=normalize_fn)
    return Run(config, workdir, mesh, data, model, augment_fn, normalize_fn, eval_step)


def build_train_step(
    run: Run, tx: optax.GradientTransformation, schedule: optax.Schedule
) -> Callable:
    """`make_train_step` for the run: its image functions, label smoothing, class-balanced
    weights over the training labels, and the learning rate of ``schedule`` (the one ``tx``
    follows) in the metrics."""
    config, data = run.config, run.data
    weights = None
    if config.class_balanced_loss:
        weights = class_weights(data.train_labels, len(data.class_names))
    return make_train_step(
        run.model,
        tx,
        run.mesh,
        augment_fn=run.augment_fn,
        normalize_fn=run.normalize_fn,
        label_smoothing=config.label_smoothing,
        class_weights=weights,
        schedule=schedule,
    )
