"""Shared pytest set-up.

The process set-up of an entry point comes first (``cervix_jax.runtime.setup()``: XLA flags).
Tests run on CPU. Multi-device tests need several CPU devices, and the device count must be fixed
before JAX initialises: we ask for 4 here, once for the whole session (single-device tests use
``jax.devices()[:1]`` explicitly).
"""

import os

import pytest

from cervix_jax import runtime

# Read when JAX starts its backend, so set before any test runs JAX.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")
runtime.setup()


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """One persistent XLA compilation cache per test process, handed to the subprocesses the
    tests start (they inherit the environment): the tiny models' programs are compiled by many
    tests and tool runs, and on 2 CPU cores compiling is most of the suite's time."""
    directory = os.fspath(tmp_path_factory.mktemp("xla_cache"))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
    runtime.enable_compilation_cache(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_trained_workdir(tmp_path_factory):
    """A finished training workdir (resnet50_tiny, 32 px synthetic SIPaKMeD, one epoch), made
    once per session for the tests of the tools that read workdirs."""
    from cervix_jax import train
    from configs import default

    config = default.get_config()
    config.model.name = "resnet50_tiny"
    config.data.synthetic = True
    config.data.synthetic_images_per_class = 4
    config.data.image_size = 32
    config.data.num_workers = 0
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_epochs = 1
    workdir = tmp_path_factory.mktemp("tiny_trained") / "run"
    train.train_and_evaluate(config, os.fspath(workdir))
    return workdir
