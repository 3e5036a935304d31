"""Process-wide set-up, made by the entry point: ``cervix_jax.runtime.setup()``.

Importing ``cervix_jax`` changes nothing in the process. ``main.py`` and the scripts in
``tools/`` and ``bench/`` call `setup` first; so can a notebook, in its first cell::

    from cervix_jax import runtime
    runtime.setup()   # before the first JAX computation

What it sets: XLA's CPU flag `YNN_FLAG`, appended to the ``XLA_FLAGS`` environment variable
(faster CPU training steps, unchanged losses: docs/performance.md). XLA reads ``XLA_FLAGS``
once, when JAX starts its first backend (the first computation, ``jax.devices()``, ...; not
``import jax``), so `setup` must come before that; child processes (grain workers, processes
started by tools/launch_local.py) inherit the variable. ``XLA_FLAGS`` is left as it is when it
already mentions the flag (the user's own value wins) or when ``CERVIX_JAX_DEFAULT_XLA_FLAGS=0``
is set (the opt-out).

`drop_log_records` removes single log records that libraries emit at warning level for
situations that are normal here (each caller says which and why); nothing else is filtered.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping

_YNN_FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
YNN_FLAG = f"--{_YNN_FLAG_NAME}=dot,eltwise,reduce"
OPT_OUT_VARIABLE = "CERVIX_JAX_DEFAULT_XLA_FLAGS"


def default_xla_flags(environ: Mapping[str, str]) -> str:
    """The ``XLA_FLAGS`` value that `setup` leaves in an environment ``environ``."""
    flags = environ.get("XLA_FLAGS", "")
    if environ.get(OPT_OUT_VARIABLE, "1") == "0" or _YNN_FLAG_NAME in flags:
        return flags
    return f"{flags} {YNN_FLAG}".strip()


def backend_started() -> bool:
    """Whether JAX has started a backend in this process (asked without importing JAX).

    jax 0.10 has no public question for this: ``jax._src.xla_bridge.backends_are_initialized``
    is the check ``jax.distributed.initialize`` itself makes. If a later JAX drops it, this
    answers False and tests/test_runtime.py fails.
    """
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    check = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(check and check())


def setup() -> None:
    """Sets ``XLA_FLAGS`` to `default_xla_flags` of the process environment.

    Warns (``RuntimeWarning``) when that changes ``XLA_FLAGS`` after JAX has started a backend:
    the flag then has no effect in this process (only in its children). In a notebook, restart
    the kernel and call `setup` before anything else.
    """
    flags = default_xla_flags(os.environ)
    if flags == os.environ.get("XLA_FLAGS", ""):
        return
    os.environ["XLA_FLAGS"] = flags
    if backend_started():
        warnings.warn(
            f"cervix_jax.runtime.setup() came after JAX started its backend: XLA_FLAGS now holds "
            f"{YNN_FLAG}, but XLA has read XLA_FLAGS already, so it applies to child processes "
            "only. Call setup() before the first JAX computation (in a notebook: restart the "
            "kernel, setup() in the first cell).",
            RuntimeWarning,
            stacklevel=2,
        )


class _DropRecords(logging.Filter):
    """Drops the records whose message template starts with ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)

    def __eq__(self, other) -> bool:  # so that adding the same filter twice adds it once
        return isinstance(other, _DropRecords) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)


def drop_log_records(prefix: str, logger: str = "absl") -> None:
    """Drops the records of ``logger`` (absl's, which Orbax and TFDS log to) whose message
    template starts with ``prefix``; calling it again with the same prefix changes nothing."""
    logging.getLogger(logger).addFilter(_DropRecords(prefix))


def enable_compilation_cache(directory: str | os.PathLike) -> None:
    """Keeps XLA's compiled programs in ``directory`` (JAX's persistent compilation cache).

    For commands that compile the same programs many times over: the runs of a study differ
    in fold and variant, not in shapes, so their train, evaluation and attribution steps are
    compiled once and read back (about half the CPU time of a tiny study's runs). Programs
    that compile in under a second are not stored.
    """
    import jax

    jax.config.update("jax_compilation_cache_dir", os.fspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
