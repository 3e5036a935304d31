"""``train_and_evaluate`` and ``evaluate``: the training loop around the jitted step.

Every process runs this code; only process 0 writes logs, metrics, reports and plots, while
checkpoints are saved and restored collectively (Orbax). Re-running in the same workdir resumes
from the latest checkpoint (state, optimizer, PRNG key and data position) and ends with the same
result as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train import report as report_lib
from cervix_jax.train import workdir as workdir_lib
from cervix_jax.train.data_module import DataModule, build_data_module
from cervix_jax.train.errors import TrainingError
from cervix_jax.train.optim import make_optimizer
from cervix_jax.train.state import TrainState, create_state, inference_variables
from cervix_jax.train.step import make_eval_step, make_train_step

DEVICE_KEYS = ("image", "label", "mask")
EVAL_DEVICE_KEYS = ("image", "label", "mask", "index")


# --------------------------------------------------------------------------------------------
# Small helpers


def is_writer() -> bool:
    """Only process 0 writes files other than checkpoints."""
    return jax.process_index() == 0


def _log(msg: str) -> None:
    if is_writer():
        print(msg, flush=True)


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def read_history(workdir: str | os.PathLike) -> list[dict]:
    """Records of ``metrics.jsonl`` (one per epoch)."""
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _keep_history(workdir: Path, last_epoch: int) -> list[dict]:
    # A run killed after logging an epoch but before its checkpoint landed logs that epoch
    # again when resumed: keep only what the restored checkpoint has seen.
    history = [h for h in read_history(workdir) if h["epoch"] <= last_epoch]
    if is_writer():
        report_lib.atomic_write_text(
            workdir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history)
        )
    return history


class _Writer:
    """``metrics.jsonl`` plus TensorBoard events (tensorboardX: no TensorFlow), process 0."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.tb = None
        if is_writer():
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(logdir=str(workdir / "tensorboard"))

    def write(self, record: dict) -> None:
        if not is_writer():
            return
        with open(self.workdir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k not in ("epoch", "step") and isinstance(v, int | float):
                self.tb.add_scalar(k, v, global_step=record["step"])
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------------------------
# Data and model from the config


def build_model(config: ml_collections.ConfigDict, num_classes: int):
    from cervix_jax import models

    options = dict(config.model.get("options", {}) or {})
    return models.create_model(
        config.model.name,
        num_classes,
        dropout_rate=config.model.dropout_rate,
        dtype=config.model.dtype,
        **options,
    )


def _init_variables(model, rng: jax.Array, image_size: int) -> dict:
    from cervix_jax import models

    return models.init_variables(model, rng, image_size)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``N / (K * n_c)`` per class (sklearn's 'balanced'); absent classes get weight 0."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
    w = np.divide(len(labels), num_classes * counts, out=np.zeros_like(counts), where=counts > 0)
    return w.astype(np.float32)


def _augment_fn(config: ml_collections.ConfigDict, augment_fn=None):
    if augment_fn is not None:
        return augment_fn
    from cervix_jax import data

    aug = config.data.augment
    return lambda key, images: data.augment(key, images, aug)


def _normalize_fn(normalize_fn=None):
    if normalize_fn is not None:
        return normalize_fn
    from cervix_jax import data

    return data.normalize


def _abstract_state(model, tx, image_size: int, mesh) -> Any:
    """``ShapeDtypeStruct`` tree of the ``TrainState`` (restore target), no computation."""
    from cervix_jax import models

    def init(variables) -> TrainState:
        return create_state(variables, tx, jax.random.PRNGKey(0))

    abstract_vars = models.abstract_variables(model, image_size)
    return ckpt_lib.abstract_like(jax.eval_shape(init, abstract_vars), mesh_lib.replicated(mesh))


# --------------------------------------------------------------------------------------------
# init_from: a converted torchvision checkpoint or another run's workdir


def _load_pretrained(init_from: str) -> dict:
    path = Path(init_from)
    if (path / "config.json").exists() and (path / "checkpoints").exists():
        _, _, variables = restore_inference_variables(path, which="best")
        return jax.tree.map(np.asarray, variables)
    from cervix_jax import models

    if not path.exists():
        raise TrainingError(
            f"config.init_from={init_from!r} does not exist: give a directory written by "
            "tools/convert_torchvision.py or another run's workdir."
        )
    return models.load_converted(str(path))


def apply_init_from(variables: dict, init_from: str) -> dict:
    """Copies pretrained weights into ``variables`` except the classifier head (always fresh)
    and layers the source lacks (e.g. the channel attention of densenet121_rca when starting
    from torchvision's DenseNet-121)."""
    from cervix_jax import models

    pretrained = _load_pretrained(init_from)
    merged, kept_fresh = models.merge_pretrained(variables, pretrained)
    _log(f"init_from {init_from}: pretrained weights loaded; kept fresh: {', '.join(kept_fresh)}")
    return merged


def train_batches(config: ml_collections.ConfigDict, data: DataModule, start_step: int = 0):
    """The data wing's training iterator over ``data``'s training split: this process's rows
    of global batch ``start_step``, ``start_step + 1``, ... (a grain iterator, checkpointable)."""
    from cervix_jax import data as data_lib

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
    from cervix_jax import data as data_lib

    return data_lib.eval_iterator(
        data.source,
        data.splits[split],
        image_size=int(config.data.image_size),
        global_batch_size=int(config.eval_batch_size),
        num_workers=int(config.data.num_workers),
        prefetch_buffer_size=int(config.data.prefetch_buffer_size),
    )


# --------------------------------------------------------------------------------------------
# Evaluation


def run_evaluation(
    eval_step, variables: dict, data: DataModule, split: str, config, mesh
) -> dict[str, np.ndarray]:
    """Per-example outputs of ``split`` on the host of every process, padding removed, sorted
    by record index: ``index [N]``, ``label [N]``, ``logits [N, C]``, ``loss [N]``."""
    mesh_lib.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
    outs = []
    for batch in eval_batches(config, data, split):
        keys = [k for k in EVAL_DEVICE_KEYS if k in batch]
        gb = mesh_lib.global_batch(batch, mesh, keys)
        outs.append(eval_step(variables, gb))
    host = mesh_lib.to_host(outs)
    cat = {k: np.concatenate([o[k] for o in host]) for k in host[0]}
    keep = cat.pop("mask").astype(bool)
    cat = {k: v[keep] for k, v in cat.items()}
    order = np.argsort(cat["index"], kind="stable")
    cat = {k: v[order] for k, v in cat.items()}
    expected = data.num_examples(split)
    if len(cat["label"]) != expected:
        raise TrainingError(
            f"evaluation of split {split!r} saw {len(cat['label'])} examples, expected "
            f"{expected}: the evaluation iterator must yield each example exactly once."
        )
    return cat


def _summary(outputs: dict[str, np.ndarray]) -> tuple[float, float]:
    preds = outputs["logits"].argmax(-1)
    return float(outputs["loss"].mean()), float((preds == outputs["label"]).mean())


def final_report(
    workdir: Path,
    config: ml_collections.ConfigDict,
    eval_step,
    variables: dict,
    data: DataModule,
    mesh,
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


# --------------------------------------------------------------------------------------------
# Training


def _check_finite(losses: list[tuple[int, Any]], epoch: int, last_saved: int | None) -> None:
    """Raises ``TrainingError`` naming the first step with a non-finite loss."""
    if not losses:
        return
    values = np.asarray(jax.device_get([v for _, v in losses]), np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step, value = losses[int(bad[0])][0], values[int(bad[0])]
        saved = "no checkpoint yet" if last_saved is None else f"last checkpoint: step {last_saved}"
        raise TrainingError(
            f"non-finite loss ({value}) at step {step} (epoch {epoch}); training stopped before "
            f"saving it ({saved}). Lower --config.optim.lr, set --config.optim.grad_clip_norm, "
            "or check the input data."
        )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    data: DataModule | None = None,
    model=None,
    augment_fn=None,
    normalize_fn=None,
    stop_after_steps: int | None = None,
) -> dict:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints), then evaluates the
    best-validation checkpoint on the test split.

    Args:
      config: the resolved config (``configs/*.py``).
      workdir: output directory (``checkpoints/``, ``config.json``, ``metrics.jsonl``,
        TensorBoard events, ``report.json``, ``report.md``, ``plots/``, predictions).
      data, model, augment_fn, normalize_fn: injected for tests; built from the config when
        None.
      stop_after_steps: stop (without final evaluation) after the epoch that reaches this step;
        simulates a killed run in tests.

    Returns:
      The test report (``report.json``'s content); ``{}`` if stopped early.
    """
    workdir = Path(workdir)
    workdir_lib.check_resumable(config, workdir)  # before anything is written
    if is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
    mesh = mesh_lib.make_mesh()
    data = data if data is not None else build_data_module(config, workdir)
    num_classes = len(data.class_names)
    model = model if model is not None else build_model(config, num_classes)
    mesh_lib.check_batch_size(config.batch_size, mesh)
    mesh_lib.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
    num_train = data.num_examples("train")
    steps_per_epoch = num_train // config.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(
            f"the training split has {num_train} examples, fewer than config.batch_size="
            f"{config.batch_size}; lower --config.batch_size."
        )
    total_steps = steps_per_epoch * config.num_epochs
    tx = make_optimizer(config.optim, steps_per_epoch, config.num_epochs)

    if is_writer():
        workdir_lib.write_config(config, workdir)

    rng = jax.random.PRNGKey(config.seed)
    init_rng, state_rng = jax.random.split(rng)
    rep = mesh_lib.replicated(mesh)
    manager = ckpt_lib.make_manager(
        workdir / "checkpoints", config.checkpoint_keep_latest, config.checkpoint_keep_best
    )
    latest = manager.latest_step()
    start_epoch = 0
    # The step the training iterator was created at: part of its identity (a saved grain state
    # restores only into an iterator made alike), so it is kept in every checkpoint's meta.
    data_start_step = 0
    if latest is not None:
        abstract = _abstract_state(model, tx, config.data.image_size, mesh)
        data_start_step = int(ckpt_lib.restore_meta(manager, latest).get("data_start_step", 0))
        train_iter = train_batches(config, data, data_start_step)
        state, meta, iter_ok = ckpt_lib.restore(manager, latest, abstract, data_iter=train_iter)
        start_epoch = int(meta["epoch"])
        if not iter_ok:  # e.g. resumed on another number of processes or grain workers
            data_start_step = int(latest)
            train_iter = train_batches(config, data, data_start_step)
        _log(f"resumed from {workdir / 'checkpoints'} step {latest} (epoch {start_epoch})")
        _keep_history(workdir, start_epoch)
    else:
        train_iter = train_batches(config, data)
        variables = _init_variables(model, init_rng, config.data.image_size)
        if config.init_from:
            variables = apply_init_from(variables, config.init_from)
        state = jax.device_put(create_state(variables, tx, state_rng), rep)
        _keep_history(workdir, 0)

    cw = None
    if config.class_balanced_loss:
        cw = class_weights(data.train_labels, num_classes)
    train_step = make_train_step(
        model,
        tx,
        mesh,
        augment_fn=_augment_fn(config, augment_fn),
        normalize_fn=_normalize_fn(normalize_fn),
        label_smoothing=config.label_smoothing,
        class_weights=cw,
    )
    eval_step = make_eval_step(model, mesh, normalize_fn=_normalize_fn(normalize_fn))
    writer = _Writer(workdir)
    _log(
        f"training {config.model.name} on {num_train} images, {config.num_epochs} epochs x "
        f"{steps_per_epoch} steps, global batch {config.batch_size} over {mesh.devices.size} "
        f"device(s) in {jax.process_count()} process(es)"
    )

    step = int(jax.device_get(state.step))
    last_saved = latest
    run_start = time.perf_counter()
    timed_steps, timed_seconds = 0, 0.0
    stopped_early = False
    try:
        for epoch in range(start_epoch + 1, config.num_epochs + 1):
            epoch_start = time.perf_counter()
            losses: list[tuple[int, Any]] = []
            correct, count = [], []
            window_start, window_steps = time.perf_counter(), 0
            for i in range(steps_per_epoch):
                batch = next(train_iter)
                gb = mesh_lib.global_batch(batch, mesh, [k for k in DEVICE_KEYS if k in batch])
                state, m = train_step(state, gb)
                step += 1
                losses.append((step, m["loss"]))
                correct.append(m["correct"])
                count.append(m["count"])
                window_steps += 1
                last_of_epoch = i == steps_per_epoch - 1
                if step % config.log_every_steps == 0 or last_of_epoch:
                    _check_finite(losses[-window_steps:], epoch, last_saved)
                    elapsed = time.perf_counter() - window_start
                    # The first window holds the compilation; it is not a throughput sample.
                    first_window = step - window_steps <= start_epoch * steps_per_epoch
                    if not first_window:
                        timed_steps += window_steps
                        timed_seconds += elapsed
                    ips = window_steps * config.batch_size / max(elapsed, 1e-9)
                    rate = timed_steps / timed_seconds if timed_seconds else None
                    eta = (total_steps - step) / rate if rate else float("nan")
                    n_ok = int(np.sum(jax.device_get(correct)))
                    n_all = int(np.sum(jax.device_get(count)))
                    _log(
                        f"epoch {epoch}/{config.num_epochs} step {step}/{total_steps} "
                        f"loss {float(jax.device_get(m['loss'])):.4f} "
                        f"acc {n_ok / max(n_all, 1):.3f} {ips:.1f} img/s"
                        f"{' (incl. compilation)' if first_window else ''} "
                        f"ETA {_fmt_time(eta) if math.isfinite(eta) else '?'}"
                    )
                    window_start, window_steps = time.perf_counter(), 0
            train_loss = float(np.mean(jax.device_get([v for _, v in losses])))
            n_all = max(int(np.sum(jax.device_get(count))), 1)
            train_acc = float(np.sum(jax.device_get(correct)) / n_all)
            val = run_evaluation(eval_step, inference_variables(state), data, "val", config, mesh)
            val_loss, val_acc = _summary(val)
            epoch_s = time.perf_counter() - epoch_start
            record = {
                "epoch": epoch,
                "step": step,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "learning_rate": float(tx_lr(config, steps_per_epoch, step)),
                "epoch_seconds": epoch_s,
                "train_images_per_second": steps_per_epoch * config.batch_size / epoch_s,
            }
            writer.write(record)
            _log(
                f"epoch {epoch}: train loss {train_loss:.4f} acc {train_acc:.3f} | "
                f"val loss {val_loss:.4f} acc {val_acc:.3f} | {epoch_s:.1f}s"
            )
            ckpt_lib.save(
                manager,
                step,
                state,
                data_iter=train_iter,
                meta={
                    "epoch": epoch,
                    "val_accuracy": val_acc,
                    "val_loss": val_loss,
                    "data_start_step": data_start_step,
                },
                metrics={"val_accuracy": val_acc, "val_loss": val_loss},
            )
            last_saved = step
            if stop_after_steps is not None and step >= stop_after_steps:
                stopped_early = epoch < config.num_epochs
                break
    finally:
        manager.wait_until_finished()
        writer.close()

    if stopped_early:
        manager.close()
        return {}
    best = manager.best_step()
    if best is None:
        raise TrainingError(f"no checkpoint in {workdir / 'checkpoints'} to evaluate.")
    abstract = _abstract_state(model, tx, config.data.image_size, mesh)
    best_state = ckpt_lib.restore_state_only(manager, best, abstract)
    manager.close()
    report = final_report(
        workdir, config, eval_step, inference_variables(best_state), data, mesh, step=best
    )
    _log(
        f"test ({report['num_examples']} images, best checkpoint step {best}): accuracy "
        f"{report['accuracy']:.4f}, balanced accuracy {report['balanced_accuracy']:.4f}, "
        f"macro F1 {report['macro_f1']:.4f}; total {_fmt_time(time.perf_counter() - run_start)}"
    )
    return report


def tx_lr(config: ml_collections.ConfigDict, steps_per_epoch: int, step: int) -> float:
    """Learning rate used at ``step`` (for logging)."""
    from cervix_jax.train.optim import make_schedule

    return float(make_schedule(config.optim, steps_per_epoch, config.num_epochs)(step))


# --------------------------------------------------------------------------------------------
# Restoring for evaluation and inference


def _open_checkpoint(workdir: Path, which: str | int):
    manager = ckpt_lib.make_manager(workdir / "checkpoints", read_only=True)
    if which == "best":
        step = manager.best_step()
    elif which == "latest":
        step = manager.latest_step()
    else:
        step = int(which)
        if step not in manager.all_steps():
            raise TrainingError(
                f"no checkpoint at step {step} in {workdir / 'checkpoints'}; available: "
                f"{list(manager.all_steps())}."
            )
    if step is None:
        raise TrainingError(f"no checkpoint in {workdir / 'checkpoints'}; train first.")
    return manager, step


def restore_inference_variables(
    workdir: str | os.PathLike, which: str | int = "best"
) -> tuple[ml_collections.ConfigDict, Any, dict]:
    """Loads a trained model for inference.

    Args:
      workdir: a training workdir (``config.json`` + ``checkpoints/``).
      which: ``'best'`` (validation accuracy), ``'latest'`` or a step number.

    Returns:
      ``(config, model, variables)`` with ``variables = {'params', 'batch_stats'}`` replicated
      over the current devices; ``model.apply(variables, x, train=False)`` with ``x`` normalised
      by ``cervix_jax.data.normalize``.
    """
    workdir = Path(workdir)
    config = workdir_lib.load_config_json(workdir)
    from cervix_jax.data import CLASS_NAMES

    model = build_model(config, len(CLASS_NAMES))
    tx = make_optimizer(config.optim, 1, max(1, config.num_epochs))
    mesh = mesh_lib.make_mesh()
    manager, step = _open_checkpoint(workdir, which)
    state = ckpt_lib.restore_state_only(
        manager, step, _abstract_state(model, tx, config.data.image_size, mesh)
    )
    manager.close()
    return config, model, inference_variables(state)


def evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    data: DataModule | None = None,
    model=None,
    normalize_fn=None,
    which: str | int = "best",
    split: str = "test",
) -> dict:
    """``--mode=eval``: evaluates a checkpoint of ``workdir`` on ``split`` and rewrites the
    report (data from ``config``; model and optimizer structure from ``config`` too, which must
    match the run's)."""
    workdir = Path(workdir)
    mesh = mesh_lib.make_mesh()
    data = data if data is not None else build_data_module(config, workdir)
    model = model if model is not None else build_model(config, len(data.class_names))
    manager, step = _open_checkpoint(workdir, which)
    tx = make_optimizer(config.optim, 1, max(1, config.num_epochs))
    state = ckpt_lib.restore_state_only(
        manager, step, _abstract_state(model, tx, config.data.image_size, mesh)
    )
    manager.close()
    eval_step = make_eval_step(model, mesh, normalize_fn=_normalize_fn(normalize_fn))
    report = final_report(
        workdir, config, eval_step, inference_variables(state), data, mesh, step=step, split=split
    )
    _log(
        f"{split} ({report['num_examples']} images, checkpoint step {step}): accuracy "
        f"{report['accuracy']:.4f}, balanced accuracy {report['balanced_accuracy']:.4f}, "
        f"macro F1 {report['macro_f1']:.4f}; report in {workdir / 'report.json'}"
    )
    return report
