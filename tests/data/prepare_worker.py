"""One process of test_multiprocess_prepare.py (started by tools/launch_local.py): builds the
data module of a tiny synthetic config, with process 0's preparation made ``--delay_s``
slower, then meets the other processes in a collective.

    python -m tests.data.prepare_worker --workdir=W --delay_s=35 \
        --coordinator_address=... --num_processes=2 --process_id=I
"""

from __future__ import annotations

import argparse
import time

from cervix_jax import runtime
from cervix_jax.train.distributed import exit_at_once_on_failure, initialize_distributed


@exit_at_once_on_failure
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--delay_s", type=float, default=0.0)
    parser.add_argument("--coordinator_address")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--process_id", type=int)
    args = parser.parse_args()
    runtime.setup()
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)

    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from cervix_jax.data import data_module
    from configs import default

    config = default.get_config()
    config.data.synthetic = True
    config.data.synthetic_images_per_class = 4
    if jax.process_index() == 0:
        prepare = data_module.load_sipakmed

        def slow_prepare(data_config):
            time.sleep(args.delay_s)  # as a real SIPaKMeD preparation, which takes minutes
            return prepare(data_config)

        data_module.load_sipakmed = slow_prepare
    module = data_module.build_data_module(config, args.workdir)
    counts = multihost_utils.process_allgather(np.int32(len(module.source)))
    print(f"process {jax.process_index()} sees {np.asarray(counts).tolist()} records", flush=True)


if __name__ == "__main__":
    main()
