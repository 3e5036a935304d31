"""Train or evaluate a cervix_jax model.

    python main.py --config=configs/rca.py --workdir=workdirs/rca \
        --config.data.manual_dir=/path/to/sipakmed
    python main.py --config=configs/rca.py:demo --workdir=workdirs/demo
    python main.py --workdir=workdirs/rca --mode=eval

``--mode=eval`` evaluates the run as it was trained, with the config saved in the workdir
(``--config`` may be given, but any setting that changes what is computed is refused).

Bad input prints one line: exit code 2 for the command line (an unknown flag or config key, a
value of the wrong type, a config file that does not load), 1 for the rest (a config value a
run cannot use, a workdir of another run, ...).
Ctrl-C exits with 130, SIGTERM with 143 after saving a checkpoint at the step reached; the same
command resumes either (cervix_jax.train.interrupts).

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

    from cervix_jax import reports, runtime
    from cervix_jax.train import distributed, flag_parsing
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

FLAGS = flags.FLAGS
flag_parsing.define_config_file(
    None, "Config file, e.g. configs/rca.py or configs/rca.py:cropped,demo."
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and reports.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval"],
    "train (then evaluate) or eval only (with the config saved in --workdir).",
)
distributed.define_flags()
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    distributed.initialize_from_flags()
    import jax

    from cervix_jax import train

    logging.set_verbosity(logging.WARNING)
    with train.reported_as_exit():
        if FLAGS.mode == "train":
            train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
        else:
            train.evaluate(FLAGS.config, FLAGS.workdir)
    if jax.process_index() == 0:  # the page beside report.md (train does not import reports)
        reports.write_run_report(FLAGS.workdir)


def parse_flags(argv: list[str]) -> list[str]:
    """The command line, every refusal in one line (`flag_parsing.parse_config_flags`);
    ``--config`` may be left out with ``--mode=eval`` (the run's saved config is used)."""
    rest = flag_parsing.parse_config_flags(argv)
    if FLAGS.config is None and FLAGS.mode == "train":
        flag_parsing.exit_usage_error("--config is required with --mode=train")
    return rest


if __name__ == "__main__":
    app.run(distributed.exit_at_once_on_failure(main), flags_parser=parse_flags)
