"""K-fold cross-validation of one config: one training run per fold, then statistics over folds.

    python tools/cross_validate.py --config=configs/rca.py --workdir=workdirs/rca_cv \
        --config.data.manual_dir=/path/to/sipakmed [--folds=0,1,2,3,4]

Fold k tests on fold k and validates on fold k+1 (mod K); the run lives in ``WORKDIR/fold_k``
(re-running resumes unfinished folds and skips finished ones). ``WORKDIR/cv_report.json`` and
``cv_report.md`` hold per-fold metrics and their mean, sample standard deviation and 95% t
interval. The logic is ``cervix_jax.study.cross_validate``; a grid of models and variants is
``tools/study.py``.
"""

from __future__ import annotations

import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
    from cervix_jax.train import distributed, flag_parsing
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

FLAGS = flags.FLAGS
flag_parsing.define_config_file(None, "Config file (configs/*.py[:string]).")
flags.DEFINE_string("workdir", None, "Output directory; fold k trains in WORKDIR/fold_k.")
flags.DEFINE_string("folds", "", "Comma-separated folds to run (default: all K).")
distributed.define_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    distributed.initialize_from_flags()
    import jax

    from cervix_jax import study, train

    folds = [f for f in FLAGS.folds.split(",") if f.strip()]
    with train.reported_as_exit():  # user errors, Ctrl-C and SIGTERM: one line, an exit code
        try:
            if not all(f.strip().isdigit() for f in folds):
                raise study.StudyError(f"--folds={FLAGS.folds}: expected fold numbers, e.g. 0,1.")
            cv = study.cross_validate(FLAGS.config, FLAGS.workdir, [int(f) for f in folds])
        except study.StudyError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)
    if jax.process_index() == 0:
        print(study.cv_markdown(cv, "Cross-validation"), flush=True)


if __name__ == "__main__":
    app.run(distributed.exit_at_once_on_failure(main), flags_parser=flag_parsing.parse_config_flags)
