"""Training and evaluation: mesh, jitted step, Orbax checkpoints, metrics, reports.

Public surface (contract in docs/design.md):

- ``train_and_evaluate(config, workdir) -> dict``: trains (resuming from ``WORKDIR/checkpoints``
  if present), then evaluates the best-validation checkpoint on the test split; returns the
  content of ``report.json``.
- ``evaluate(config, workdir) -> dict``: ``--mode=eval`` on an existing workdir, as trained
  (``config`` None: the saved one; a config that changes what is computed is refused).
- ``restore_inference_variables(workdir, which='best') -> (config, model, variables)``: only
  the parameters and BatchNorm statistics of a checkpoint (no optimizer state).
- ``Parts``: data, model or image functions given to a run instead of built from its config
  (tests, experiments).
- ``TrainingError``: a run cannot go on; its message says why and what to do.
  ``ConfigError`` (a subclass): a config value a run cannot use, named by ``check_config``,
  the one place where configs are checked, before any work (``config_checks``).
- ``Interrupted``: a run stopped by Ctrl-C (exit code 130) or SIGTERM (143, after saving a
  checkpoint at the step reached); ``reported_as_exit()``: how entry points turn these and
  ``user_errors()`` into one line on stderr and an exit code (``interrupts``, ``errors``).
- ``require_training_workdir(path)``, ``checkpoint_steps(path)``: what tools check before
  reading a run (no JAX, nothing created).
- ``mesh``: the ``('data',)`` device mesh, shardings and global batches (``make_mesh``,
  ``batch_sharding``, ``replicated``, ``global_batch``, ``to_host``), also used by ``explain``.
- ``user_errors()``: the exception types entry points print without a traceback.
- ``ProgressLine``: the one-line ``done/total images`` counter of the tools over images.
- ``classification_metrics``, ``per_class_scores`` (also of stacked confusion matrices),
  ``load_config_json``, ``has_checkpoints``, ``check_resumable`` (whether a workdir can take
  a run of a config).

Modules: ``loop`` (the recipe: ``train_and_evaluate``, ``train_epoch``, ``evaluate``),
``resume`` (restore-or-init), ``restore`` (variables for analysis), ``builders`` (model, steps
and iterators from the config), ``config_checks``, ``interrupts``, ``flag_parsing`` (the
``--config`` flag of the entry points, refusals in one line), ``evaluation``,
``progress``, ``workdir``, ``checkpoints``, ``step``, ``state``, ``optim``, ``mesh``,
``metrics``, ``report``, ``distributed``, ``errors``.
"""

from __future__ import annotations

from cervix_jax.train import distributed, flag_parsing, mesh
from cervix_jax.train.builders import Parts
from cervix_jax.train.config_checks import check_config
from cervix_jax.train.errors import (
    ConfigError,
    Interrupted,
    TrainingError,
    reported_as_exit,
    user_errors,
)
from cervix_jax.train.loop import evaluate, train_and_evaluate
from cervix_jax.train.metrics import classification_metrics, per_class_scores
from cervix_jax.train.optim import make_optimizer, make_schedule
from cervix_jax.train.progress import ProgressLine
from cervix_jax.train.restore import restore_inference_variables
from cervix_jax.train.state import create_state
from cervix_jax.train.step import make_eval_step, make_train_step
from cervix_jax.train.workdir import (
    check_resumable,
    checkpoint_steps,
    has_checkpoints,
    load_config_json,
    require_training_workdir,
)

__all__ = [
    "ConfigError",
    "Interrupted",
    "Parts",
    "ProgressLine",
    "TrainingError",
    "check_config",
    "check_resumable",
    "checkpoint_steps",
    "classification_metrics",
    "create_state",
    "distributed",
    "evaluate",
    "flag_parsing",
    "has_checkpoints",
    "load_config_json",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "mesh",
    "per_class_scores",
    "reported_as_exit",
    "require_training_workdir",
    "restore_inference_variables",
    "train_and_evaluate",
    "user_errors",
]
