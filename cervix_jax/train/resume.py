"""Where a training run starts: its latest checkpoint, or a fresh initialization.

Resuming restores everything the uninterrupted run would have in memory at that point: the
``TrainState`` (parameters, optimizer state, step, PRNG key), the epoch, and the position of the
training data iterator, so the resumed run ends with the same result.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from cervix_jax import models
from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train import workdir as workdir_lib
from cervix_jax.train.builders import Run, train_batches
from cervix_jax.train.errors import TrainingError
from cervix_jax.train.progress import log
from cervix_jax.train.restore import restore_inference_variables
from cervix_jax.train.state import TrainState, create_state


@dataclasses.dataclass(frozen=True)
class Start:
    """A run's starting point.

    Attributes:
      state: the ``TrainState``, replicated over the mesh.
      batches: the training iterator, positioned at the next batch to train on.
      epoch: epochs already done (0 for a fresh run).
      data_start_step: the step ``batches`` was created at. A saved grain state restores only
        into an iterator made alike, so this is part of its identity and goes into every
        checkpoint's meta.
    """

    state: TrainState
    batches: Any
    epoch: int
    data_start_step: int


def abstract_train_state(
    model: nn.Module, tx: optax.GradientTransformation, image_size: int, mesh: Mesh
) -> TrainState:
    """``ShapeDtypeStruct`` tree of the ``TrainState`` (restore target), replicated over
    ``mesh``; nothing is computed."""

    def init(variables) -> TrainState:
        return create_state(variables, tx, jax.random.PRNGKey(0))

    abstract_vars = models.abstract_variables(model, image_size)
    return ckpt_lib.abstract_like(jax.eval_shape(init, abstract_vars), mesh_lib.replicated(mesh))


def restore_or_init(
    run: Run, manager: ocp.CheckpointManager, tx: optax.GradientTransformation
) -> Start:
    """The run's latest checkpoint in ``manager`` if there is one, else a fresh start.

    Resuming: the saved data position is restored into an iterator made at the saved
    ``data_start_step``; when it does not fit (another number of processes or grain workers),
    a new iterator is made at the checkpoint's step instead. ``metrics.jsonl`` keeps only the
    epochs the checkpoint has seen. A fresh start initializes the model from ``config.seed``,
    copies in the weights of ``config.init_from`` if set, and empties ``metrics.jsonl``.
    """
    config, workdir = run.config, run.workdir
    latest = manager.latest_step()
    if latest is None:
        return _fresh_start(run, tx)
    data_start_step = int(ckpt_lib.restore_meta(manager, latest).get("data_start_step", 0))
    batches = train_batches(config, run.data, data_start_step)
    abstract = abstract_train_state(run.model, tx, config.data.image_size, run.mesh)
    state, meta, iterator_restored = ckpt_lib.restore(manager, latest, abstract, data_iter=batches)
    if not iterator_restored:
        data_start_step = int(latest)
        batches = train_batches(config, run.data, data_start_step)
    epoch = int(meta["epoch"])
    log(f"resumed from {workdir / 'checkpoints'} step {latest} (epoch {epoch})")
    workdir_lib.trim_history(workdir, epoch)
    return Start(state=state, batches=batches, epoch=epoch, data_start_step=data_start_step)


def _fresh_start(run: Run, tx: optax.GradientTransformation) -> Start:
    config = run.config
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    batches = train_batches(config, run.data)
    variables = models.init_variables(run.model, init_rng, config.data.image_size)
    if config.init_from:
        variables = apply_init_from(variables, config.init_from)
    state = jax.device_put(create_state(variables, tx, state_rng), mesh_lib.replicated(run.mesh))
    workdir_lib.trim_history(run.workdir, 0)
    return Start(state=state, batches=batches, epoch=0, data_start_step=0)


def _load_pretrained(init_from: str) -> dict:
    path = Path(init_from)
    if (path / "config.json").exists() and (path / "checkpoints").exists():
        _, _, variables = restore_inference_variables(path, which="best")
        return jax.tree.map(np.asarray, variables)
    if not path.exists():
        raise TrainingError(
            f"config.init_from={init_from!r} does not exist: give a directory written by "
            "tools/convert_torchvision.py or another run's workdir."
        )
    return models.load_converted(os.fspath(path))


def apply_init_from(variables: dict, init_from: str) -> dict:
    """Copies pretrained weights (a converted torchvision checkpoint or another run's workdir)
    into ``variables`` except the classifier head (always fresh) and layers the source lacks
    (e.g. the channel attention of densenet121_rca when starting from torchvision's
    DenseNet-121)."""
    pretrained = _load_pretrained(init_from)
    merged, kept_fresh = models.merge_pretrained(variables, pretrained)
    log(f"init_from {init_from}: pretrained weights loaded; kept fresh: {', '.join(kept_fresh)}")
    return merged
