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
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from cervix_jax import data as data_lib
from cervix_jax import models
from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train import workdir as workdir_lib
from cervix_jax.train.builders import Run, train_batches
from cervix_jax.train.errors import TrainingError
from cervix_jax.train.progress import log, warn
from cervix_jax.train.restore import restore_inference_variables
from cervix_jax.train.state import TrainState, create_state


@dataclasses.dataclass(frozen=True)
class EpochSoFar:
    """Running sums over the steps of the epoch in progress: zero when an epoch starts, and
    restored from a mid-epoch checkpoint (saved on SIGTERM, ``meta['epoch_so_far']``), so that
    the epoch's record covers all its steps, as in an uninterrupted run."""

    steps: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0

    def plus(self, losses: list, correct: list, count: list) -> EpochSoFar:
        """These sums plus the per-step device values of more steps."""
        return EpochSoFar(
            steps=self.steps + len(losses),
            loss_sum=self.loss_sum + float(np.sum(np.asarray(jax.device_get(losses), np.float64))),
            correct=self.correct + int(np.sum(jax.device_get(correct))),
            count=self.count + int(np.sum(jax.device_get(count))),
        )


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
      so_far: the sums of the epoch in progress (zero unless resumed from a mid-epoch
        checkpoint).
    """

    state: TrainState
    batches: Any
    epoch: int
    data_start_step: int
    so_far: EpochSoFar = EpochSoFar()


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
    """The run's latest readable checkpoint in ``manager`` if there is one, else a fresh start.

    Resuming: the saved data position is restored into an iterator made at the saved
    ``data_start_step``; when it does not fit (another number of processes or grain workers),
    a new iterator is made at the checkpoint's step instead. ``metrics.jsonl`` keeps only the
    epochs the checkpoint has seen. A checkpoint that cannot be read (a damaged file) is moved
    to ``WORKDIR/damaged_checkpoints/`` with a warning naming it, and the newest readable one
    is used; if none can be read, `TrainingError`. A fresh start initializes the model from
    ``config.seed``, copies in the weights of ``config.init_from`` if set, and empties
    ``metrics.jsonl``.
    """
    damaged: list[tuple[int, BaseException]] = []
    for step in sorted(manager.all_steps(), reverse=True):
        start, error = None, None
        try:
            start = _resume_from(run, manager, tx, step)
        except Exception as e:  # noqa: BLE001 (narrowed just below)
            if not ckpt_lib.is_read_error(e):
                raise
            error = e
        if _in_every_process(start is not None):
            _set_aside(run.workdir, manager, damaged, resumed=step)
            return start
        if start is not None:
            data_lib.close_iterator(start.batches)
        damaged.append((step, error or TrainingError("cannot be read in another process")))
    if damaged:
        step, error = damaged[0]
        raise TrainingError(
            f"no checkpoint in {manager.directory} can be read; the latest, step {step}: "
            f"{ckpt_lib.describe_read_error(error)}. Move the folder {manager.directory} "
            "aside to train from scratch."
        )
    return _fresh_start(run, tx)


def _in_every_process(ok: bool) -> bool:
    """Whether ``ok`` holds in every process: they must resume from the same checkpoint."""
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def _resume_from(
    run: Run, manager: ocp.CheckpointManager, tx: optax.GradientTransformation, step: int
) -> Start:
    config, workdir = run.config, run.workdir
    meta = ckpt_lib.restore_meta(manager, step)
    data_start_step = int(meta.get("data_start_step", 0))
    batches = train_batches(config, run.data, data_start_step)
    abstract = abstract_train_state(run.model, tx, config.data.image_size, run.mesh)
    try:
        state, meta, iterator_restored = ckpt_lib.restore(
            manager, step, abstract, data_iter=batches
        )
    except BaseException:
        data_lib.close_iterator(batches)
        raise
    if not iterator_restored:
        data_lib.close_iterator(batches)
        data_start_step = int(step)
        batches = train_batches(config, run.data, data_start_step)
    epoch = int(meta["epoch"])
    so_far = EpochSoFar(**meta.get("epoch_so_far", {}))
    where = f" and {so_far.steps} step(s) of epoch {epoch + 1}" if so_far.steps else ""
    log(f"resumed from {workdir / 'checkpoints'} step {step} (epoch {epoch}{where})")
    workdir_lib.trim_history(workdir, epoch)
    return Start(state, batches, epoch, data_start_step, so_far)


def _set_aside(workdir: Path, manager: ocp.CheckpointManager, damaged: list, resumed: int) -> None:
    """Moves unreadable checkpoints out of the manager's folder (never deletes them), warns,
    and makes the manager forget them, so that the resumed run can save those steps again."""
    if not damaged:
        return
    for step, error in damaged:
        moved = ckpt_lib.set_aside(manager, step, workdir / "damaged_checkpoints")
        warn(
            f"checkpoint step {step} in {manager.directory} cannot be read "
            f"({ckpt_lib.describe_read_error(error)}); moved to {moved}, resuming from step "
            f"{resumed}."
        )
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("cervix_jax: damaged checkpoints set aside")
    manager.reload()


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
