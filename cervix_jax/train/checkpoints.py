"""Orbax checkpoints in ``WORKDIR/checkpoints/``: the latest N and the best N by validation
accuracy.

One checkpoint is a composite of three items:
  - ``state``: the ``TrainState`` pytree (``StandardSave``). Restored against an abstract target
    (``jax.eval_shape`` + the current mesh's shardings), so a checkpoint written on N devices
    restores on 1 and vice versa: whole to resume training (`restore`), or only its ``params``
    and ``batch_stats`` for evaluation and analysis (`restore_variables`: no optimizer needed,
    no optimizer state read).
  - ``data_iter``: the grain iterator position (grain's Orbax handler; one file per process).
  - ``meta``: small JSON (epoch, validation metrics).
Every process calls ``save``/``restore`` (Orbax coordinates multi-host writes); Orbax writes into
a temporary directory and renames it when complete, so a killed save never looks finished.
"""

from __future__ import annotations

import os
from typing import Any

import grain.python as grain
import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from cervix_jax import runtime
from cervix_jax.train.errors import TrainingError

# The metrics of a mid-epoch checkpoint (saved on SIGTERM, not validated): below every validated
# checkpoint, so 'best' never picks it while another exists, and the preservation policy drops
# it once a later checkpoint is saved.
UNVALIDATED_METRICS = {"val_accuracy": -1.0, "val_loss": 1e3}


def best_metric(metrics: dict) -> float:
    """Ranking of checkpoints: validation accuracy, ties broken by lower validation loss."""
    return float(metrics["val_accuracy"]) - 1e-6 * min(float(metrics["val_loss"]), 1e3)


def make_manager(directory: str, keep_latest: int = 1, keep_best: int = 1, read_only=False):
    """A ``CheckpointManager`` keeping the latest ``keep_latest`` and best ``keep_best``."""
    policy = pp.AnyPreservationPolicy(
        [
            pp.LatestN(n=max(1, keep_latest)),
            pp.BestN(get_metric_fn=best_metric, reverse=False, n=max(1, keep_best)),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=best_metric,  # used by best_step() only; deletion follows preservation_policy
        best_mode="max",
        create=not read_only,
        read_only=read_only,
        # Orbax sets (and warns about) 0 for a read-only manager; saying it spares the warning.
        save_interval_steps=0 if read_only else 1,
    )
    if read_only:
        # Orbax warns 'Given directory is read only' for every read-only manager, i.e. on every
        # evaluation: it is what we asked for, not a problem.
        runtime.drop_log_records("Given directory is read only")
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """``ShapeDtypeStruct`` leaves with ``sharding`` (the restore target)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    *,
    data_iter: Any = None,
    meta: dict | None = None,
    metrics: dict | None = None,
) -> None:
    """Saves one checkpoint (asynchronously; ``manager.wait_until_finished()`` to block)."""
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta or {})}
    if data_iter is not None:
        items["data_iter"] = grain.PyGrainCheckpointSave(data_iter)
    manager.save(step, args=ocp.args.Composite(**items), metrics=metrics)


def _saved_iterator_state(manager: ocp.CheckpointManager, step: int) -> bytes | None:
    # grain's Orbax handler writes one JSON file per process, named after the process layout.
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    path = manager.directory / str(step) / "data_iter" / name
    return path.read_bytes() if path.exists() else None


def restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    """Only the ``meta`` item (JSON) of ``step``."""
    restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"] or {})


def restore(
    manager: ocp.CheckpointManager,
    step: int,
    abstract_state: Any,
    *,
    data_iter: Any = None,
) -> tuple[Any, dict, bool]:
    """Restores ``(state, meta, iterator_restored)`` from ``step``.

    ``data_iter`` (if given) is set to the saved position when the checkpoint holds one that
    fits it: same process layout, and grain accepts it (same worker count, same data source
    and sampler). Otherwise ``iterator_restored`` is False and the caller re-positions it (for
    example a run resumed on a different number of processes).
    """
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
        ),
    )
    iterator_restored = False
    if data_iter is not None:
        saved = _saved_iterator_state(manager, step)
        why = f"none for process {jax.process_index()} of {jax.process_count()}"
        if saved is not None:
            try:
                data_iter.set_state(saved)
                iterator_restored = True
            except ValueError as e:  # grain: worker count, source or sampler differ
                why = str(e).splitlines()[0]
        if not iterator_restored:
            logging.warning(
                "checkpoint %d: saved data position not usable (%s); re-positioning the data "
                "iterator from the step number",
                step,
                why,
            )
    return restored["state"], dict(restored["meta"] or {}), iterator_restored


def is_read_error(error: BaseException) -> bool:
    """Whether ``error``, raised while restoring a checkpoint, says that its files cannot be
    read: truncated or missing files (TensorStore errors, which Orbax re-raises as a bare
    ``Exception``), unparsable JSON (``ValueError``), or the file system (``OSError``)."""
    return isinstance(error, ValueError | OSError) or type(error) is Exception


def describe_read_error(error: BaseException) -> str:
    """The first line of ``error``'s message, shortened: TensorStore's run to pages."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    line = line.split(" See full TensorStore details")[0]
    return line if len(line) <= 200 else line[:197] + "..."


def set_aside(manager: ocp.CheckpointManager, step: int, folder: os.PathLike) -> str:
    """Moves checkpoint ``step`` out of ``manager``'s directory into ``folder`` (process 0;
    the others only compute the name); returns its new path. Call ``manager.reload()`` after
    every process has passed here."""
    source = manager.directory / str(step)
    target = os.path.join(os.fspath(folder), str(step))
    suffix = 1
    while os.path.exists(target):
        target, suffix = os.path.join(os.fspath(folder), f"{step}.{suffix}"), suffix + 1
    if jax.process_index() == 0:
        os.makedirs(folder, exist_ok=True)
        os.replace(os.fspath(source), target)
    return target


def checkpoint_step(manager: ocp.CheckpointManager, which: str | int) -> int:
    """The step of checkpoint ``which``: ``'best'`` (`best_metric`), ``'latest'`` or a step
    number, which must exist."""
    if which == "best":
        step = manager.best_step()
    elif which == "latest":
        step = manager.latest_step()
    else:
        step = int(which)
        if step not in manager.all_steps():
            raise TrainingError(
                f"no checkpoint at step {step} in {manager.directory}; available: "
                f"{list(manager.all_steps())}."
            )
    if step is None:
        raise TrainingError(f"no checkpoint in {manager.directory}; train first.")
    return step


def restore_variables(manager: ocp.CheckpointManager, step: int, abstract_variables: dict) -> dict:
    """Only ``params`` and ``batch_stats`` of the ``state`` item, as ``abstract_variables``
    (``{'params', 'batch_stats'?}`` of ``ShapeDtypeStruct`` with shardings) describes them.

    An Orbax partial restore: the optimizer state and the rest of the ``TrainState`` are
    neither read nor held. Open ``manager`` read-only for this: a manager that saved ``state``
    in this process is bound to the handler it saved with.
    """
    target = dict(abstract_variables)
    args = ocp.args.PyTreeRestore(
        item=target,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True,
    )
    return manager.restore(step, args=ocp.args.Composite(state=args))["state"]
