"""Train or evaluate a cervix_jax model.

    python main.py --config=configs/rca.py --workdir=workdirs/rca \
        --config.data.manual_dir=/path/to/sipakmed
    python main.py --config=configs/rca.py:demo --workdir=workdirs/demo
    python main.py --config=configs/rca.py --workdir=workdirs/rca --mode=eval

Several hosts: run the same command on every host with ``--coordinator_address=HOST:PORT
--num_processes=N --process_id=I``, or without them where the cluster environment provides
them (TPU pod slices, SLURM, Open MPI).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging  # noqa: I001
from ml_collections import config_flags

import cervix_jax  # noqa: F401  (sets XLA flags before jax initialises)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file, e.g. configs/rca.py or configs/rca.py:cropped,demo.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and reports.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (then evaluate) or eval only.")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (multi-host runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host runs).")
flags.DEFINE_integer("process_id", None, "Index of this process (multi-host runs).")
flags.mark_flags_as_required(["config", "workdir"])

# Environment variables by which a cluster announces a multi-process job that
# jax.distributed.initialize() can read by itself.
_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES")


def _cluster_provides_processes() -> bool:
    for var in _CLUSTER_ENV:
        value = os.environ.get(var, "")
        if var == "TPU_WORKER_HOSTNAMES" and "," in value:
            return True
        if value.isdigit() and int(value) > 1:
            return True
    return False


def initialize_distributed(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """Joins the JAX distributed runtime when this is a multi-process run; no-op otherwise."""
    import jax

    explicit = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise app.UsageError(
                "--coordinator_address, --num_processes and --process_id go together; got "
                f"{coordinator_address!r}, {num_processes!r}, {process_id!r}."
            )
        if num_processes == 1:
            return
        # Cross-process collectives between CPU devices need gloo (the default has none);
        # the setting does not affect GPU or TPU devices.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    elif _cluster_provides_processes():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    from cervix_jax import train
    from cervix_jax.train import user_errors

    logging.set_verbosity(logging.WARNING)
    try:
        if FLAGS.mode == "train":
            train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
        else:
            train.evaluate(FLAGS.config, FLAGS.workdir)
    except user_errors() as e:
        # Our own errors carry the full explanation; a traceback would only bury it.
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
