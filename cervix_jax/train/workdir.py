"""A training workdir's own files: ``config.json``, ``metrics.jsonl`` and TensorBoard events,
who writes them, and the rule of what may change when a run is resumed.

Only process 0 writes these files (`is_writer`); checkpoints are written by every process.

A resumed run must end as the uninterrupted run would, and a workdir must describe what its
checkpoints hold. So a workdir with checkpoints keeps its config: only the settings in
``RESUMABLE_FIELDS`` (where files are, how many workers read them, how often to log and how
many checkpoints to keep) may differ on resume; any other difference stops the run before
anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
from tensorboardX import SummaryWriter

from cervix_jax import files
from cervix_jax.train.errors import TrainingError

# Settings that do not change what a run computes: they may differ when it is resumed.
RESUMABLE_FIELDS = frozenset(
    {
        "data.manual_dir",
        "data.tfds_data_dir",
        "data.num_workers",
        "data.prefetch_buffer_size",
        "eval_batch_size",
        "log_every_steps",
        "checkpoint_keep_latest",
        "checkpoint_keep_best",
        "init_from",  # only read when a run starts from scratch
    }
)

# Keys older versions wrote that no longer exist (never read): ignored when comparing configs.
RETIRED_FIELDS = frozenset({"data.with_masks"})


def config_path(workdir: str | os.PathLike) -> Path:
    return Path(workdir) / "config.json"


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """Steps of the finished checkpoints in ``WORKDIR/checkpoints`` (step-numbered folders;
    Orbax renames a checkpoint into place only when it is complete), ascending. Reads only the
    folder names, so it is cheap and starts nothing."""
    folder = Path(workdir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def has_checkpoints(workdir: str | os.PathLike) -> bool:
    """Whether ``WORKDIR/checkpoints`` holds a finished checkpoint (a step-numbered folder)."""
    return bool(checkpoint_steps(workdir))


def require_training_workdir(workdir: str | os.PathLike) -> None:
    """Raises ``TrainingError`` unless ``workdir`` holds a trained run (``config.json`` and a
    checkpoint); for what reads a run (``--mode=eval``, the tools), before anything is created."""
    workdir = Path(workdir)
    missing = [
        what
        for what, present in (
            ("config.json", config_path(workdir).is_file()),
            ("checkpoints", has_checkpoints(workdir)),
        )
        if not present
    ]
    if missing:
        where = f"no {' and no '.join(missing)}"
        if not workdir.is_dir():
            where = "it is a file" if workdir.exists() else "no such directory"
        raise TrainingError(
            f"{workdir} is not a training workdir ({where}); give the --workdir of a trained run "
            "(train one with main.py --workdir=...)."
        )


def load_config_json(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The resolved config a run saved in ``WORKDIR/config.json``."""
    path = config_path(workdir)
    if not path.exists():
        raise TrainingError(
            f"{path} not found: {workdir} is not a cervix_jax training workdir (train there "
            "first with main.py --workdir=...)."
        )
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_changes(
    saved: ml_collections.ConfigDict | dict, config: ml_collections.ConfigDict
) -> list[tuple[str, Any, Any]]:
    """``(field, saved value, new value)`` for every field outside ``RESUMABLE_FIELDS`` that
    differs (a field missing on one side counts as a difference)."""
    as_dict = saved.to_dict() if isinstance(saved, ml_collections.ConfigDict) else saved
    old = _flatten(json.loads(json.dumps(as_dict)))
    new = _flatten(json.loads(config.to_json_best_effort()))
    missing = object()
    changes = []
    for field in sorted(set(old) | set(new)):
        before, after = old.get(field, missing), new.get(field, missing)
        if field not in RESUMABLE_FIELDS | RETIRED_FIELDS and before != after:
            changes.append((field, before, after))
    return [
        (f, "(absent)" if b is missing else b, "(absent)" if a is missing else a)
        for f, b, a in changes
    ]


def check_resumable(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
    """Raises ``TrainingError`` if ``workdir`` cannot take a run of ``config``: it is a file, or
    it holds checkpoints of a run whose saved config differs from ``config`` in a field that
    cannot change on resume. Reads only; writes nothing."""
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise TrainingError(f"--workdir={workdir} is a file; give a directory.")
    if not (has_checkpoints(workdir) and config_path(workdir).exists()):
        return
    changes = config_changes(load_config_json(workdir), config)
    if changes:
        lines = "\n".join(f"  {f}: {old!r} (saved) -> {new!r} (now)" for f, old, new in changes)
        raise TrainingError(
            f"{workdir} holds checkpoints of a run with other settings, which cannot change "
            f"when it is resumed:\n{lines}\nTrain in another --workdir, or resume with the "
            f"settings saved in {config_path(workdir)}."
        )


def config_for_evaluation(
    config: ml_collections.ConfigDict | None, workdir: str | os.PathLike
) -> ml_collections.ConfigDict:
    """The config that evaluates ``workdir``'s run as it was trained: the saved one, or
    ``config`` when it differs from it only in ``RESUMABLE_FIELDS`` (where files are, workers,
    the evaluation batch size). Any other difference would evaluate something else than the
    run (another image size, fold or model) and write it over the run's report: refused,
    naming the fields. Reads only; writes nothing."""
    require_training_workdir(workdir)
    saved = load_config_json(workdir)
    if config is None:
        return saved
    changes = config_changes(saved, config)
    if changes:
        listed = ", ".join(f"{f}: {old!r} (saved) -> {new!r} (now)" for f, old, new in changes)
        raise TrainingError(
            f"--mode=eval evaluates {workdir} as trained, with {config_path(workdir)}; drop the "
            f"settings that differ from it ({listed}), or train another --workdir with them."
        )
    return config


def write_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
    """Saves ``config`` as ``WORKDIR/config.json`` (process 0 only)."""
    if is_writer():
        files.atomic_write_text(config_path(workdir), config.to_json_best_effort(indent=2))


def is_writer() -> bool:
    """Only process 0 writes files other than checkpoints (and prints progress)."""
    return jax.process_index() == 0


def read_history(workdir: str | os.PathLike) -> list[dict]:
    """Records of ``metrics.jsonl`` (one per epoch)."""
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trim_history(workdir: str | os.PathLike, last_epoch: int) -> list[dict]:
    """Keeps the records of epochs ``<= last_epoch`` in ``metrics.jsonl`` and returns them.

    A run killed after logging an epoch but before its checkpoint landed logs that epoch again
    when resumed: only what the restored checkpoint has seen may stay.
    """
    history = [h for h in read_history(workdir) if h["epoch"] <= last_epoch]
    if is_writer():
        files.atomic_write_text(
            Path(workdir) / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history)
        )
    return history


class MetricWriter:
    """Appends epoch records to ``metrics.jsonl`` and TensorBoard events (tensorboardX: no
    TensorFlow); does nothing outside process 0."""

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = Path(workdir)
        self.tb = SummaryWriter(logdir=str(self.workdir / "tensorboard")) if is_writer() else None

    def write(self, record: dict) -> None:
        if self.tb is None:
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
