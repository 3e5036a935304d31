"""One process of the multi-host rehearsal in test_multihost.py (started by launch_local).

    python -m tests.train.multihost_worker --workdir=W [--fail_process=I --fail_after_reads=K] \
        --coordinator_address=... --num_processes=2 --process_id=I

``--fail_process``/``--fail_after_reads`` (test-only) make process I's data source raise after K
record reads, in the middle of training, while its peers wait for it in a collective. The run
goes through the same ``exit_at_once_on_failure`` wrapper as main.py.
"""

from __future__ import annotations

import argparse

from cervix_jax import runtime
from cervix_jax.data import ArraySource
from cervix_jax.train.distributed import exit_at_once_on_failure, initialize_distributed


class _FailingSource(ArraySource):
    def __init__(self, arrays, fail_after_reads: int):
        super().__init__(arrays)
        self._left = fail_after_reads

    def __getitem__(self, i: int) -> dict:
        self._left -= 1
        if self._left < 0:
            raise RuntimeError("injected failure: the data source broke")
        return super().__getitem__(i)


@exit_at_once_on_failure
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--fail_process", type=int, default=-1)
    parser.add_argument("--fail_after_reads", type=int, default=0)
    parser.add_argument("--coordinator_address")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--process_id", type=int)
    args = parser.parse_args()
    runtime.setup()
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)

    import jax

    from cervix_jax.data import DataModule
    from cervix_jax.train import train_and_evaluate
    from tests.train import helpers

    assert jax.process_count() == args.num_processes, jax.process_count()
    config = helpers.multihost_config()
    data = helpers.data_module()
    if jax.process_index() == args.fail_process:
        source = _FailingSource(helpers.learnable_images(16), args.fail_after_reads)
        data = DataModule(source, data.splits, data.metadata)
    train_and_evaluate(config, args.workdir, parts=helpers.parts(config, data))
    print(f"process {jax.process_index()} done", flush=True)


if __name__ == "__main__":
    main()
