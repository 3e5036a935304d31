"""Shared pytest set-up.

Tests run on CPU. Multi-device tests need several CPU devices, and the device count must be fixed
before JAX initialises: we ask for 4 here, once for the whole session (single-device tests use
``jax.devices()[:1]`` explicitly).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")

import cervix_jax  # noqa: E402,F401  (sets XLA flags before jax initialises)
