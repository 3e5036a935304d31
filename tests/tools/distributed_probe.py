"""A tiny multi-process JAX program for launcher tests (run by tools/launch_local.py).

Each process contributes ``[process_id * 10 + local index]`` rows to a global array sharded
over every device of every process, and prints the jitted global sum. ``--fail_process=I``
makes process I fail after joining, while the others block in a collective. A failing
process leaves with ``os._exit``: a normal exit would wait at jax.distributed's shutdown barrier
for peers that are stuck in the collective, and nobody would ever see the failure (main.py does
the same for multi-process runs).
"""

import argparse
import os
import sys
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cervix_jax import runtime


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--coordinator_address")
    p.add_argument("--num_processes", type=int)
    p.add_argument("--process_id", type=int)
    p.add_argument("--fail_process", type=int, default=-1)
    p.add_argument("--tag", default="", help="ignored; lets tests find their processes")
    args = p.parse_args()
    runtime.setup()  # as every entry point, before the backend starts
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    try:
        return _run(args)
    except Exception:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)


def _run(args) -> int:
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    local = np.array(
        [args.process_id * 10 + i for i in range(jax.local_device_count())], np.float32
    )
    if args.process_id == args.fail_process:
        raise RuntimeError("failing on purpose")
    global_array = jax.make_array_from_process_local_data(sharding, local)
    total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, PartitionSpec()))(global_array)
    print(f"devices={jax.device_count()} sum={float(total):g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
