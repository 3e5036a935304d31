"""Joining JAX's distributed runtime for multi-process (multi-host) runs, and leaving it when
something fails."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import jax
from absl import app, flags

# Environment variables by which a cluster announces a multi-process job whose parameters
# jax.distributed.initialize() reads by itself.
_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES")


def cluster_provides_processes(environ=None) -> bool:
    """True under SLURM / Open MPI with more than one task, or on a multi-host TPU slice."""
    env = os.environ if environ is None else environ
    for var in _CLUSTER_ENV:
        value = env.get(var, "")
        if var == "TPU_WORKER_HOSTNAMES":
            if "," in value:
                return True
        elif value.isdigit() and int(value) > 1:
            return True
    return False


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cluster: bool | None = None,
) -> bool:
    """Joins the JAX distributed runtime when this is a multi-process run.

    With all three of ``coordinator_address``, ``num_processes``, ``process_id``: explicit
    (``tools/launch_local.py``, hand-started processes). Otherwise ``cluster`` decides:
    True calls ``jax.distributed.initialize()`` with no arguments, which reads them from the
    cluster (SLURM, Open MPI, Cloud TPU VM metadata, GKE); None does so only if the environment
    announces several processes (SLURM, Open MPI, GKE TPU: `cluster_provides_processes`; a
    Cloud TPU VM pod slice announces itself only through its metadata server, hence True);
    False never does. Returns whether it initialised.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise ValueError(
                "--coordinator_address, --num_processes and --process_id go together; got "
                f"{coordinator_address!r}, {num_processes!r}, {process_id!r}."
            )
        if num_processes == 1:
            return False
        # Cross-process collectives between CPU devices need gloo (the default has none);
        # the setting does not affect GPU or TPU devices.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
        return True
    if cluster is None:
        cluster = cluster_provides_processes()
    if cluster:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize()
        return True
    return False


def define_flags(flag_values=None) -> None:
    """Defines the multi-process flags shared by main.py and the tools: ``--coordinator_address``,
    ``--num_processes``, ``--process_id`` and ``--distributed`` (see `initialize_from_flags`)."""
    fv = flags.FLAGS if flag_values is None else flag_values
    flags.DEFINE_string(
        "coordinator_address", None, "HOST:PORT of process 0 (multi-host runs).", flag_values=fv
    )
    flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "Index of this process (multi-host).", flag_values=fv)
    flags.DEFINE_bool(
        "distributed",
        None,
        "Join jax.distributed with parameters from the cluster: unset = when SLURM / Open MPI / "
        "GKE announce several processes; --distributed for a Cloud TPU VM pod slice; "
        "--nodistributed never.",
        flag_values=fv,
    )


def initialize_from_flags(flag_values=None) -> bool:
    """`initialize_distributed` from the flags of `define_flags`; a bad combination raises
    ``absl.app.UsageError``."""
    fv = flags.FLAGS if flag_values is None else flag_values
    try:
        return initialize_distributed(
            fv.coordinator_address, fv.num_processes, fv.process_id, cluster=fv.distributed
        )
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def _in_distributed_runtime() -> bool:
    return jax.distributed.is_initialized()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def exit_at_once_on_failure(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an entry point so that a failing process of a multi-process run really exits.

    A normal interpreter exit waits at jax.distributed's shutdown barrier for the other
    processes, which may be blocked in a collective waiting for this one: nobody would ever
    exit, and the launcher (``tools/launch_local.py``, SLURM, a TPU pod) would never see the
    failure. So in a multi-process run an uncaught exception prints its traceback and a
    non-zero ``sys.exit`` its message (already printed by the caller), output is flushed, and
    the process leaves with ``os._exit``. Single-process runs are left untouched.
    """

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except SystemExit as e:
            if e.code in (0, None) or not _in_distributed_runtime():
                raise
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
            _flush()
            os._exit(e.code if isinstance(e.code, int) else 1)
        except BaseException:
            if not _in_distributed_runtime():
                raise
            traceback.print_exc()
            _flush()
            os._exit(1)

    return wrapped
