"""A training run for test_loop's kill test: the 3-epoch run of the ``trained`` fixture, with
slow record reads so that it can be killed mid-epoch.

    python -m tests.train.kill_worker WORKDIR      (from the repository root)
"""

from __future__ import annotations

import sys

from cervix_jax import runtime
from cervix_jax.train import train_and_evaluate
from tests.train import helpers

if __name__ == "__main__":
    runtime.setup()
    config = helpers.small_config(num_epochs=3)
    train_and_evaluate(config, sys.argv[1], parts=helpers.parts(config, helpers.slow_data_module()))
