"""cervix_jax.train.distributed: when to join the runtime, and the single-process behaviour of
exit_at_once_on_failure (the multi-process one is tested in test_multihost.py)."""

import pytest

from cervix_jax.train import distributed


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, False),
        ({"SLURM_NTASKS": "1"}, False),
        ({"SLURM_NTASKS": "8"}, True),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, True),
        ({"TPU_WORKER_HOSTNAMES": "host-0"}, False),
        ({"TPU_WORKER_HOSTNAMES": "host-0,host-1"}, True),
    ],
)
def test_cluster_provides_processes(env, expected):
    assert distributed.cluster_provides_processes(env) is expected


def test_single_process_does_not_join(monkeypatch):
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
    monkeypatch.delenv("TPU_WORKER_HOSTNAMES", raising=False)
    assert distributed.initialize_distributed() is False
    assert distributed.initialize_distributed(cluster=False) is False
    assert distributed.initialize_distributed("127.0.0.1:1", 1, 0) is False
    with pytest.raises(ValueError, match="go together"):
        distributed.initialize_distributed("127.0.0.1:1", None, 0)


def test_exit_at_once_leaves_single_process_errors_alone():
    @distributed.exit_at_once_on_failure
    def failing():
        raise RuntimeError("boom")

    @distributed.exit_at_once_on_failure
    def exiting():
        raise SystemExit(3)

    with pytest.raises(RuntimeError, match="boom"):
        failing()
    with pytest.raises(SystemExit) as e:
        exiting()
    assert e.value.code == 3
