"""Trained variables from a workdir's checkpoints, for evaluation, analysis and ``init_from``.

Only ``params`` and ``batch_stats`` are read (`checkpoints.restore_variables`), so nothing here
builds an optimizer or holds optimizer state; resuming a training run is `resume.py`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import flax.linen as nn
import ml_collections
from jax.sharding import Mesh

from cervix_jax import models
from cervix_jax.data import CLASS_NAMES
from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train.builders import build_model
from cervix_jax.train.errors import TrainingError
from cervix_jax.train.workdir import load_config_json, require_training_workdir


def restore_model_variables(
    workdir: str | os.PathLike,
    model: nn.Module,
    image_size: int,
    *,
    which: str | int = "best",
    mesh: Mesh | None = None,
) -> tuple[int, dict]:
    """``(step, variables)`` of checkpoint ``which`` (``'best'``, ``'latest'`` or a step) of
    ``workdir``: ``{'params', 'batch_stats'}`` of ``model`` replicated over ``mesh`` (default:
    all devices), whatever the number of devices that wrote the checkpoint."""
    mesh = mesh_lib.make_mesh() if mesh is None else mesh
    abstract = ckpt_lib.abstract_like(
        models.abstract_variables(model, image_size), mesh_lib.replicated(mesh)
    )
    manager = ckpt_lib.make_manager(Path(workdir) / "checkpoints", read_only=True)
    try:
        step = ckpt_lib.checkpoint_step(manager, which)
        try:
            return step, ckpt_lib.restore_variables(manager, step, abstract)
        except Exception as e:  # noqa: BLE001 (narrowed just below)
            if not ckpt_lib.is_read_error(e):
                raise
            others = [s for s in manager.all_steps() if s != step]
            raise TrainingError(
                f"checkpoint step {step} in {manager.directory} cannot be read "
                f"({ckpt_lib.describe_read_error(e)}); it may be damaged. Other checkpoints: "
                f"{others or 'none'}."
            ) from None
    finally:
        manager.close()


def restore_inference_variables(
    workdir: str | os.PathLike, which: str | int = "best"
) -> tuple[ml_collections.ConfigDict, nn.Module, dict]:
    """Loads a trained model for inference.

    Args:
      workdir: a training workdir (``config.json`` + ``checkpoints/``).
      which: ``'best'`` (validation accuracy), ``'latest'`` or a step number.

    Returns:
      ``(config, model, variables)`` with ``variables = {'params', 'batch_stats'}`` replicated
      over the current devices; ``model.apply(variables, x, train=False)`` with ``x`` normalized
      by ``cervix_jax.data.normalize``.

    Raises:
      TrainingError: ``workdir`` is not a training workdir, or the checkpoint cannot be read.
    """
    require_training_workdir(workdir)
    config = load_config_json(workdir)
    model = build_model(config, len(CLASS_NAMES))
    _, variables = restore_model_variables(workdir, model, config.data.image_size, which=which)
    return config, model, variables
