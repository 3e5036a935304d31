"""The 1-D ``('data',)`` device mesh and the global batch built from process-local data.

Every device of every process is on one axis. Parameters are replicated; batches are sharded on
their leading axis. Each process feeds only its own rows (``batch_size / process_count``), and
``jax.make_array_from_process_local_data`` stitches them into one global array, so the same code
runs on one CPU, one multi-GPU box and a multi-host pod slice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices of all processes), Auto axis type.

    Auto (not jax 0.10's Explicit default of ``jax.make_mesh``) because explicit sharding rejects
    some of the sharded contractions of a convolutional backward pass.
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over ``'data'``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_batch: int, mesh: Mesh, name: str = "config.batch_size") -> int:
    """Returns the per-process batch size; raises if the batch does not split evenly."""
    n_dev = mesh.devices.size
    n_proc = jax.process_count()
    if global_batch % n_dev or global_batch % n_proc:
        raise ValueError(
            f"{name}={global_batch} must be divisible by the number of devices ({n_dev}) and "
            f"processes ({n_proc}); set --config.{name.removeprefix('config.')} to a multiple."
        )
    return global_batch // n_proc


def global_batch(
    local: Mapping[str, np.ndarray], mesh: Mesh, keys: Sequence[str] | None = None
) -> dict[str, jax.Array]:
    """Global arrays sharded on ``'data'`` from this process's rows.

    Args:
      local: this process's part of the batch, each ``[B_local, ...]`` (numpy).
      mesh: the data mesh.
      keys: the entries to put on device (default: every numeric entry; host-only strings such
        as ``image_id`` are skipped).

    Returns:
      ``{key: [B_local * process_count, ...] jax.Array}``.
    """
    sharding = batch_sharding(mesh)
    if keys is None:
        keys = [k for k, v in local.items() if np.asarray(v).dtype.kind in "biuf"]
    n_proc = jax.process_count()
    out = {}
    for k in keys:
        arr = np.asarray(local[k])
        shape = (arr.shape[0] * n_proc, *arr.shape[1:])
        out[k] = jax.make_array_from_process_local_data(sharding, arr, shape)
    return out


def to_host(tree):
    """Fully materialises (possibly multi-process) global arrays as numpy on every process."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)
