"""Training and evaluation: mesh, jitted step, Orbax checkpoints, metrics, reports.

Public surface (contract in docs/design.md):

- ``train_and_evaluate(config, workdir) -> dict``: trains (resuming from ``WORKDIR/checkpoints``
  if present), then evaluates the best-validation checkpoint on the test split; returns the
  content of ``report.json``.
- ``evaluate(config, workdir) -> dict``: ``--mode=eval`` on an existing workdir.
- ``restore_inference_variables(workdir, which='best') -> (config, model, variables)``: only
  the parameters and BatchNorm statistics of a checkpoint (no optimizer state).
- ``Parts``: data, model or image functions given to a run instead of built from its config
  (tests, experiments).
- ``TrainingError``: a run cannot go on; its message says why and what to do.
- ``mesh``: the ``('data',)`` device mesh, shardings and global batches (``make_mesh``,
  ``batch_sharding``, ``replicated``, ``global_batch``, ``to_host``), also used by ``explain``.
- ``user_errors()``: the exception types entry points print without a traceback.
- ``ProgressLine``: the one-line ``done/total images`` counter of the tools over images.
- ``classification_metrics``, ``per_class_scores`` (also of stacked confusion matrices),
  ``load_config_json``, ``has_checkpoints``, ``check_resumable`` (whether a workdir can take
  a run of a config).

Modules: ``loop`` (the recipe: ``train_and_evaluate``, ``train_epoch``, ``evaluate``),
``resume`` (restore-or-init), ``restore`` (variables for analysis), ``builders`` (model, steps
and iterators from the config), ``evaluation``, ``progress``, ``workdir``, ``checkpoints``,
``step``, ``state``, ``optim``, ``mesh``, ``metrics``, ``report``, ``distributed``.
"""

from __future__ import annotations

from cervix_jax.train import mesh
from cervix_jax.train.builders import Parts
from cervix_jax.train.errors import TrainingError, user_errors
from cervix_jax.train.loop import evaluate, train_and_evaluate
from cervix_jax.train.metrics import classification_metrics, per_class_scores
from cervix_jax.train.progress import ProgressLine
from cervix_jax.train.restore import restore_inference_variables
from cervix_jax.train.workdir import check_resumable, has_checkpoints, load_config_json

__all__ = [
    "Parts",
    "ProgressLine",
    "TrainingError",
    "check_resumable",
    "classification_metrics",
    "evaluate",
    "has_checkpoints",
    "load_config_json",
    "mesh",
    "per_class_scores",
    "restore_inference_variables",
    "train_and_evaluate",
    "user_errors",
]
