"""Train or evaluate a cervix_jax model.

    python main.py --config=configs/rca.py --workdir=workdirs/rca \
        --config.data.manual_dir=/path/to/sipakmed
    python main.py --config=configs/rca.py:demo --workdir=workdirs/demo
    python main.py --config=configs/rca.py --workdir=workdirs/rca --mode=eval

Several hosts: run the same command on every host with ``--coordinator_address=HOST:PORT
--num_processes=N --process_id=I``, or without them where the cluster environment provides
them (SLURM, Open MPI; add ``--distributed`` on a Cloud TPU VM pod slice). In a multi-process
run a failing process prints its error and exits at once
(``distributed.exit_at_once_on_failure``), so that the launcher sees the failure.
"""

from __future__ import annotations

import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags, logging
    from ml_collections import config_flags

    from cervix_jax import runtime
    from cervix_jax.train import distributed
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file, e.g. configs/rca.py or configs/rca.py:cropped,demo.",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and reports.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (then evaluate) or eval only.")
distributed.define_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    distributed.initialize_from_flags()
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
    import jax

    from cervix_jax import reports

    if jax.process_index() == 0:  # the page beside report.md (train does not import reports)
        reports.write_run_report(FLAGS.workdir)


def argv_config(argv: list[str]) -> str:
    return next((a for a in argv if a.startswith("--config=")), "--config")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a short message instead of a traceback when the config or an
    override is refused (unknown key, wrong type, bad config string)."""
    try:
        return FLAGS(argv)
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
        message = " ".join(str(e).replace("\\n", " ").replace("\\'", "'").split())
        if "Traceback" in message:  # an error inside get_config(): keep its last line
            message = f"{argv_config(argv)}: {message.rsplit('Error: ', 1)[-1]}"
        elif isinstance(e, KeyError | AttributeError):
            overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
            culprits = [
                o for o in overrides if any(f"'{part}'" in message for part in o.split(".")[1:])
            ]
            message = f"unknown config key {', '.join(culprits) or ''} ({message})"
        print(
            f"error: {message}\nConfig keys and their types are in configs/default.py.",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    app.run(distributed.exit_at_once_on_failure(main), flags_parser=parse_flags)
