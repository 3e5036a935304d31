"""A training run for test_loop's kill test: the 3-epoch run of the ``trained`` fixture, with
slow record reads so that it can be killed mid-epoch.

    python tests/train/kill_worker.py WORKDIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[2]))

# isort: off
import cervix_jax  # noqa: E402,F401  (first: sets XLA flags before jax initialises)

# isort: on
from cervix_jax.train import train_and_evaluate  # noqa: E402
from tests.train import helpers  # noqa: E402

if __name__ == "__main__":
    config = helpers.small_config(num_epochs=3)
    train_and_evaluate(config, sys.argv[1], parts=helpers.parts(config, helpers.slow_data_module()))
