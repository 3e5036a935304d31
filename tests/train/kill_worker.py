"""A training run for test_loop's kill and signal tests: the 3-epoch run of the ``trained``
fixture, with slow record reads so that it can be stopped mid-epoch, and the entry points' way
of reporting errors and signals (one line, exit code 1, 130 or 143).

    python -m tests.train.kill_worker WORKDIR [NUM_WORKERS]     (from the repository root)

``NUM_WORKERS`` (default 0): grain worker processes reading the data.
"""

from __future__ import annotations

import sys

from cervix_jax import runtime
from cervix_jax.train import reported_as_exit, train_and_evaluate
from tests.train import helpers

if __name__ == "__main__":
    runtime.setup()
    num_workers = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    config = helpers.small_config(num_epochs=3, **{"data.num_workers": num_workers})
    parts = helpers.parts(config, helpers.slow_data_module())
    with reported_as_exit():
        train_and_evaluate(config, sys.argv[1], parts=parts)
