"""``train_and_evaluate`` and ``evaluate``: the recipe of a run, over the parts in this package.

Every process runs this code; only process 0 writes logs, metrics, reports and plots, while
checkpoints are saved and restored collectively (Orbax). Re-running in the same workdir resumes
from the latest checkpoint (state, optimizer, PRNG key and data position) and ends with the same
result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from cervix_jax import data as data_lib
from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train import interrupts
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train import workdir as workdir_lib
from cervix_jax.train.builders import Parts, Run, build_train_step, prepare_run
from cervix_jax.train.config_checks import check_config
from cervix_jax.train.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Interrupted, TrainingError
from cervix_jax.train.evaluation import final_report, loss_and_accuracy, run_evaluation
from cervix_jax.train.optim import make_optimizer, make_schedule
from cervix_jax.train.progress import ProgressMeter, format_duration, log
from cervix_jax.train.restore import restore_model_variables
from cervix_jax.train.resume import EpochSoFar, Start, restore_or_init
from cervix_jax.train.state import TrainState, model_variables

DEVICE_KEYS = ("image", "label", "mask")


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    parts: Parts | None = None,
    stop_after_steps: int | None = None,
) -> dict:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints), then evaluates the
    best-validation checkpoint on the test split.

    Args:
      config: the resolved config (``configs/*.py``).
      workdir: output directory (``checkpoints/``, ``config.json``, ``metrics.jsonl``,
        TensorBoard events, ``report.json``, ``report.md``, ``plots/``, predictions).
      parts: data, model or image functions to use instead of the config's (tests).
      stop_after_steps: stop (without final evaluation) after the epoch that reaches this step;
        simulates a killed run in tests.

    Returns:
      The test report (``report.json``'s content); ``{}`` if stopped early.

    Raises:
      ConfigError: a config value the run cannot use (before anything is read or written).
      TrainingError: the workdir holds another run, or training cannot go on.
      Interrupted: SIGTERM (a checkpoint was saved at the step reached) or Ctrl-C; the message
        is the one line to show (`cervix_jax.train.interrupts`).
    """
    workdir = Path(workdir)
    check_config(config, check_model=parts is None or parts.model is None)
    workdir_lib.check_resumable(config, workdir)  # before anything is written
    run = prepare_run(config, workdir, parts)
    steps_per_epoch = run.steps_per_epoch()
    if workdir_lib.is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
    schedule = make_schedule(config.optim, steps_per_epoch, config.num_epochs)
    tx = make_optimizer(config.optim, schedule)
    workdir_lib.write_config(config, workdir)
    manager = ckpt_lib.make_manager(
        workdir / "checkpoints", config.checkpoint_keep_latest, config.checkpoint_keep_best
    )
    train_step = build_train_step(run, tx, schedule)
    with interrupts.StopRequests() as stop:
        try:
            start = restore_or_init(run, manager, tx)
        except BaseException:
            manager.close()
            raise
        meter = _start_meter(run, start, steps_per_epoch)
        finished = _train_epochs(run, manager, start, train_step, meter, stop, stop_after_steps)
    return _finish(run, meter) if finished else {}


def _train_epochs(
    run: Run,
    manager: ocp.CheckpointManager,
    start: Start,
    train_step: Callable,
    meter: ProgressMeter,
    stop: interrupts.StopRequests,
    stop_after_steps: int | None,
) -> bool:
    """The epochs left after ``start``, each saved in a checkpoint; True if all are done.
    SIGTERM saves a mid-epoch checkpoint and raises `Interrupted` (143), Ctrl-C raises it
    (130) after the checkpoint being written has landed."""
    config, steps_per_epoch = run.config, run.steps_per_epoch()
    state, so_far, writer = start.state, start.so_far, workdir_lib.MetricWriter(run.workdir)
    stop.last_step, interrupted = int(jax.device_get(state.step)), None
    try:
        for epoch in range(start.epoch + 1, config.num_epochs + 1):
            state, so_far, record = train_epoch(
                run, train_step, state, start.batches, epoch, steps_per_epoch, meter, so_far, stop
            )
            if record is None:  # SIGTERM mid-epoch
                _save_mid_epoch(manager, state, start, epoch, so_far)
                raise _terminated(manager, stop)
            so_far = EpochSoFar()
            writer.write(record)
            meter.log_epoch(record)
            _save_epoch(manager, state, start, record)
            if stop.should_stop(sync_point=True) and epoch < config.num_epochs:
                raise _terminated(manager, stop)
            if stop_after_steps is not None and record["step"] >= stop_after_steps:
                return epoch == config.num_epochs
    except KeyboardInterrupt:
        manager.wait_until_finished()
        interrupted = Interrupted(
            f"interrupted at step {stop.last_step}; {_latest_checkpoint(manager)}; re-run the "
            "same command to resume",
            EXIT_INTERRUPTED,
        )
    finally:
        manager.wait_until_finished()
        writer.close()
        manager.close()
        data_lib.close_iterator(start.batches)
    if interrupted is not None:
        # Raised out here, so that it does not hold the interrupted step's frames: they hold
        # the last batch, whose shared memory grain frees only when it is released.
        raise interrupted
    return True


def _latest_checkpoint(manager: ocp.CheckpointManager) -> str:
    latest = manager.latest_step()
    return "no checkpoint yet" if latest is None else f"the latest checkpoint is step {latest}"


def _terminated(manager: ocp.CheckpointManager, stop: interrupts.StopRequests) -> Interrupted:
    manager.wait_until_finished()
    return Interrupted(
        f"terminated (SIGTERM) at step {stop.last_step}; {_latest_checkpoint(manager)}; re-run "
        "the same command to resume",
        EXIT_TERMINATED,
    )


def _start_meter(run: Run, start: Start, steps_per_epoch: int) -> ProgressMeter:
    """Announces the run and starts its clock."""
    config = run.config
    log(
        f"training {config.model.name} on {run.data.num_examples('train')} images, "
        f"{config.num_epochs} epochs x {steps_per_epoch} steps, global batch "
        f"{config.batch_size} over {run.mesh.devices.size} device(s) in "
        f"{jax.process_count()} process(es)"
    )
    return ProgressMeter(
        num_epochs=config.num_epochs,
        total_steps=steps_per_epoch * config.num_epochs,
        batch_size=config.batch_size,
        start_step=int(jax.device_get(start.state.step)),
    )


def train_epoch(
    run: Run,
    train_step: Callable,
    state: TrainState,
    batches: Iterator[dict],
    epoch: int,
    steps_per_epoch: int,
    meter: ProgressMeter,
    so_far: EpochSoFar | None = None,
    stop: interrupts.StopRequests | None = None,
) -> tuple[TrainState, EpochSoFar, dict | None]:
    """Trains the rest of epoch ``epoch`` (up to step ``epoch * steps_per_epoch``) on
    ``batches``, evaluates the validation split and returns the new state, the epoch's sums
    and its ``metrics.jsonl`` record. ``so_far``: sums of the steps of this epoch done before
    (a mid-epoch checkpoint; None = none). If ``stop`` asks for it at a step boundary, returns
    early, with the record None.

    Raises:
      TrainingError: a non-finite loss (checked at every progress line, so before the epoch's
        checkpoint is saved).
    """
    config, so_far = run.config, so_far or EpochSoFar()
    first_step = step = int(jax.device_get(state.step))
    end, every = epoch * steps_per_epoch, config.log_every_steps
    meter.begin_epoch(step)
    losses, correct, count, checked = [], [], [], 0
    while step < end:
        if stop is not None and step > first_step and stop.should_stop(step % every == 0):
            return state, so_far.plus(losses, correct, count), None
        # One expression: no name holds the batch after the step (its host arrays are grain's
        # shared memory, freed when released; a Ctrl-C's traceback would keep a named one).
        state, metrics = train_step(state, _on_device(run, interrupts.next_holding_ctrl_c(batches)))
        step += 1
        if stop is not None:
            stop.last_step = step
        losses.append(metrics["loss"])
        correct.append(metrics["correct"])
        count.append(metrics["count"])
        if step % every == 0 or step == end:
            _check_finite(losses[checked:], first_step + checked, epoch, first_step)
            checked = len(losses)
            n_ok = so_far.correct + int(np.sum(jax.device_get(correct)))
            n_all = so_far.count + int(np.sum(jax.device_get(count)))
            loss = float(jax.device_get(metrics["loss"]))
            meter.log_step(epoch, step, loss, n_ok / max(n_all, 1))
    so_far = so_far.plus(losses, correct, count)
    val = run_evaluation(run.eval_step, model_variables(state), run.data, "val", config, run.mesh)
    val_loss, val_acc = loss_and_accuracy(val)
    seconds = meter.epoch_seconds()
    record = {
        "epoch": epoch,
        "step": step,
        "train_loss": so_far.loss_sum / max(so_far.steps, 1),
        "train_accuracy": so_far.correct / max(so_far.count, 1),
        "val_loss": val_loss,
        "val_accuracy": val_acc,
        "learning_rate": float(jax.device_get(metrics["learning_rate"])),
        "epoch_seconds": seconds,
        "train_images_per_second": len(losses) * config.batch_size / seconds,
    }
    return state, so_far, record


def _on_device(run: Run, batch: dict) -> dict:
    """The global device arrays of this process's rows of a training batch."""
    return mesh_lib.global_batch(batch, run.mesh, [k for k in DEVICE_KEYS if k in batch])


def _check_finite(losses: list, step_before: int, epoch: int, last_checkpoint: int) -> None:
    """Raises ``TrainingError`` naming the first step whose loss is not finite (``losses[i]``
    is the loss of step ``step_before + i + 1``)."""
    values = np.asarray(jax.device_get(losses), np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step, value = step_before + int(bad[0]) + 1, values[int(bad[0])]
        saved = f"last checkpoint: step {last_checkpoint}"
        raise TrainingError(
            f"non-finite loss ({value}) at step {step} (epoch {epoch}); training stopped before "
            f"saving it ({saved if last_checkpoint else 'no checkpoint yet'}). Lower "
            "--config.optim.lr, set --config.optim.grad_clip_norm, or check the input data."
        )


def _save_epoch(
    manager: ocp.CheckpointManager, state: TrainState, start: Start, record: dict
) -> None:
    """The epoch's checkpoint (asynchronous): state, data position and meta."""
    val = {"val_accuracy": record["val_accuracy"], "val_loss": record["val_loss"]}
    ckpt_lib.save(
        manager,
        record["step"],
        state,
        data_iter=start.batches,
        meta={"epoch": record["epoch"], **val, "data_start_step": start.data_start_step},
        metrics=val,
    )


def _save_mid_epoch(
    manager: ocp.CheckpointManager, state: TrainState, start: Start, epoch: int, so_far: EpochSoFar
) -> None:
    """A checkpoint at the step reached inside ``epoch`` (on SIGTERM): the epoch counts as not
    done, its sums so far go into ``meta`` and it ranks below every validated checkpoint."""
    step = int(jax.device_get(state.step))
    if manager.latest_step() == step:  # nothing trained since the checkpoint resumed from
        return
    ckpt_lib.save(
        manager,
        step,
        state,
        data_iter=start.batches,
        meta={
            "epoch": epoch - 1,
            "epoch_so_far": dataclasses.asdict(so_far),
            "data_start_step": start.data_start_step,
        },
        metrics=ckpt_lib.UNVALIDATED_METRICS,
    )


def _finish(run: Run, meter: ProgressMeter) -> dict:
    """Evaluates the best-validation checkpoint on the test split; writes the report."""
    step, variables = restore_model_variables(
        run.workdir, run.model, run.config.data.image_size, which="best", mesh=run.mesh
    )
    report = final_report(
        run.workdir, run.config, run.eval_step, variables, run.data, run.mesh, step=step
    )
    what = f"test ({report['num_examples']} images, best checkpoint step {step})"
    log(_report_line(what, report, f"total {format_duration(meter.elapsed())}"))
    return report


def _report_line(what: str, report: dict, tail: str) -> str:
    return (
        f"{what}: accuracy {report['accuracy']:.4f}, balanced accuracy "
        f"{report['balanced_accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}; {tail}"
    )


def evaluate(
    config: ml_collections.ConfigDict | None,
    workdir: str | os.PathLike,
    *,
    parts: Parts | None = None,
    which: str | int = "best",
    split: str = "test",
) -> dict:
    """``--mode=eval``: evaluates checkpoint ``which`` of ``workdir`` on ``split`` and rewrites
    the report.

    The run is evaluated as it was trained: with the config saved in ``WORKDIR/config.json``
    (``config`` None), or with ``config`` when it differs from that one only where files are
    and how they are read (`workdir.config_for_evaluation`; any other difference is refused
    before anything is read or written). ``parts``: data or model instead of the config's.

    Raises:
      TrainingError: ``workdir`` is not a training workdir, or ``config`` differs from the run's.
    """
    config = workdir_lib.config_for_evaluation(config, workdir)
    check_config(config, training=False, check_model=parts is None or parts.model is None)
    run = prepare_run(config, workdir, parts)
    step, variables = restore_model_variables(
        run.workdir, run.model, config.data.image_size, which=which, mesh=run.mesh
    )
    report = final_report(
        run.workdir, config, run.eval_step, variables, run.data, run.mesh, step=step, split=split
    )
    what = f"{split} ({report['num_examples']} images, checkpoint step {step})"
    log(_report_line(what, report, f"report in {run.workdir / 'report.json'}"))
    return report
