"""Training and evaluation: mesh, jitted step, Orbax checkpoints, metrics, reports.

Public surface (contract in docs/design.md):

- ``train_and_evaluate(config, workdir) -> dict``: trains (resuming from ``WORKDIR/checkpoints``
  if present), then evaluates the best-validation checkpoint on the test split; returns the
  content of ``report.json``.
- ``evaluate(config, workdir) -> dict``: ``--mode=eval`` on an existing workdir.
- ``restore_inference_variables(workdir, which='best') -> (config, model, variables)``.
- ``TrainingError``: a run cannot go on; its message says why and what to do.
- ``mesh``: the ``('data',)`` device mesh, shardings and global batches (``make_mesh``,
  ``batch_sharding``, ``replicated``, ``global_batch``, ``to_host``), also used by ``explain``.
"""

from __future__ import annotations

from cervix_jax.train import mesh
from cervix_jax.train.errors import TrainingError
from cervix_jax.train.loop import evaluate, restore_inference_variables, train_and_evaluate
from cervix_jax.train.metrics import classification_metrics
from cervix_jax.train.workdir import load_config_json


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is a complete explanation for the user (main.py and the
    tools print them without a traceback): ours, and the data wing's ``DataError`` (which
    includes ``ManualDownloadError``, SIPaKMeD missing: download instructions and the option)."""
    from cervix_jax.data import DataError, ManualDownloadError

    return (TrainingError, DataError, ManualDownloadError)


__all__ = [
    "TrainingError",
    "classification_metrics",
    "evaluate",
    "load_config_json",
    "mesh",
    "restore_inference_variables",
    "train_and_evaluate",
    "user_errors",
]
