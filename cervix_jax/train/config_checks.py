"""Every check of a run's config that needs no data and no model: one place, run first.

`check_config` is called by ``train_and_evaluate`` and ``evaluate`` before anything is read,
built or written (so by ``main.py``, ``tools/cross_validate.py`` and Python users alike). A bad
value stops the run with one line that names the field, the value and what is expected, e.g.
``config.batch_size=0: must be a positive multiple of the number of devices (4)``, instead of
an error deep inside the data pipeline or the model minutes later.

What needs the data (a training split smaller than one batch) or the file system (a dataset
folder that cannot be written) is checked where it is known, with the same kind of message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from cervix_jax import data as data_lib
from cervix_jax import models
from cervix_jax.train.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
DTYPES = ("float32", "bfloat16", "float16")
# The networks reduce an image 32-fold before the classifier; smaller images leave nothing.
MIN_IMAGE_SIZE = 32


def _value(config: ml_collections.ConfigDict, field: str) -> Any:
    node = config
    for key in field.split("."):
        node = node[key]
    return node


def _require(config, field: str, ok: Callable[[Any], bool], expected: str) -> None:
    """Raises `ConfigError` naming ``config.<field>`` unless ``ok(value)``."""
    try:
        value = _value(config, field)
    except (KeyError, AttributeError):
        raise ConfigError(f"config.{field} is missing; see configs/default.py.") from None
    try:
        good = ok(value)
    except (TypeError, ValueError):
        good = False
    if not good:
        raise ConfigError(f"config.{field}={value!r}: {expected} (--config.{field}=...).")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= low


def _fraction(value) -> bool:
    return isinstance(value, int | float) and 0.0 <= value < 1.0


def _finite_at_least(low: float) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int | float) and math.isfinite(v) and v >= low


def _check_model(config, check_model: bool) -> None:
    _require(config, "model.dtype", lambda v: v in DTYPES, f"expected one of {DTYPES}")
    _require(config, "model.dropout_rate", _fraction, "expected a rate in [0, 1)")
    if not check_model:
        return
    names = models.MODEL_NAMES
    _require(config, "model.name", lambda v: v in names, f"unknown model; one of {names}")
    options = dict(config.model.get("options", {}) or {})
    try:
        models.create_model(config.model.name, len(data_lib.CLASS_NAMES), **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.model.options: {e}") from None


def _check_data(config) -> None:
    variants = data_lib.VARIANTS
    _require(config, "data.variant", lambda v: v in variants, f"expected one of {variants}")
    _require(
        config,
        "data.image_size",
        _at_least(MIN_IMAGE_SIZE),
        f"expected an image side in pixels >= {MIN_IMAGE_SIZE}",
    )
    schemes = data_lib.SPLIT_SCHEMES
    _require(config, "data.split_scheme", lambda v: v in schemes, f"expected one of {schemes}")
    if config.data.split_scheme == "kfold":
        _require(config, "data.num_folds", _at_least(2), "expected a number of folds >= 2")
        folds = config.data.num_folds
        _require(
            config,
            "data.fold",
            lambda v: _is_int(v) and 0 <= v < folds,
            f"expected a test fold in [0, {folds}) (config.data.num_folds={folds})",
        )
    _require(config, "data.num_workers", _at_least(0), "expected >= 0 (0 = no worker processes)")
    _require(config, "data.prefetch_buffer_size", _at_least(0), "expected >= 0")
    if config.data.synthetic:
        _require(config, "data.synthetic_images_per_class", _at_least(1), "expected >= 1")


def _check_batch(config, field: str, num_devices: int, num_processes: int) -> None:
    multiple = math.lcm(num_devices, num_processes)
    _require(
        config,
        field,
        lambda v: _is_int(v) and v >= 1 and v % multiple == 0,
        f"must be a positive multiple of the number of devices ({num_devices}) and processes "
        f"({num_processes})",
    )


def _check_optimization(config) -> None:
    _require(config, "num_epochs", _at_least(1), "expected >= 1")
    _require(config, "optim.name", lambda v: v in OPTIMIZERS, f"expected one of {OPTIMIZERS}")
    _require(config, "optim.schedule", lambda v: v in SCHEDULES, f"expected one of {SCHEDULES}")
    _require(config, "optim.lr", lambda v: _finite_at_least(0.0)(v) and v > 0, "expected > 0")
    epochs = config.num_epochs
    _require(
        config,
        "optim.warmup_epochs",
        lambda v: _finite_at_least(0.0)(v) and v < epochs,
        f"expected >= 0 and below config.num_epochs={epochs}",
    )
    for field in ("optim.weight_decay", "optim.grad_clip_norm"):
        _require(config, field, _finite_at_least(0.0), "expected >= 0 (0 = off)")
    _require(config, "optim.momentum", _fraction, "expected a momentum in [0, 1)")
    _require(config, "label_smoothing", _fraction, "expected a value in [0, 1)")


def check_config(
    config: ml_collections.ConfigDict,
    *,
    training: bool = True,
    check_model: bool = True,
    num_devices: int | None = None,
    num_processes: int | None = None,
) -> None:
    """Raises `ConfigError` (one line naming the field) for the first value a run cannot use.

    Args:
      config: a resolved config (``configs/*.py`` with overrides, or a saved ``config.json``).
      training: also check what only training reads (batch size, optimizer, schedule,
        logging and checkpoint counts); False for evaluating a trained run.
      check_model: also check ``model.name`` and ``model.options`` against the registry (off
        when a model is given to the run instead of built from the config).
      num_devices, num_processes: what the batch sizes must divide into (default: JAX's
        counts, every device of every process).
    """
    num_devices = jax.device_count() if num_devices is None else num_devices
    num_processes = jax.process_count() if num_processes is None else num_processes
    _check_model(config, check_model)
    _check_data(config)
    _check_batch(config, "eval_batch_size", num_devices, num_processes)
    if not training:
        return
    _check_batch(config, "batch_size", num_devices, num_processes)
    _check_optimization(config)
    for field in ("log_every_steps", "checkpoint_keep_latest", "checkpoint_keep_best"):
        _require(config, field, _at_least(1), "expected >= 1")
