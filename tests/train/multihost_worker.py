"""One process of the multi-host rehearsal in test_multihost.py (started by launch_local).

    python tests/train/multihost_worker.py --workdir=W --coordinator_address=... \
        --num_processes=2 --process_id=I
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[2]))

# isort: off
import cervix_jax  # noqa: E402,F401  (first: sets XLA flags before jax initialises)

# isort: on
from cervix_jax.train.distributed import initialize_distributed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--coordinator_address")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--process_id", type=int)
    args = parser.parse_args()
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)

    import jax

    from cervix_jax.train import train_and_evaluate
    from tests.train import helpers

    assert jax.process_count() == args.num_processes, jax.process_count()
    config = helpers.multihost_config()
    train_and_evaluate(
        config, args.workdir, data=helpers.data_module(), **helpers.run_kwargs(config)
    )
    print(f"process {jax.process_index()} done", flush=True)


if __name__ == "__main__":
    main()
