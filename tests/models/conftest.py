"""Shared fixtures: tiny models initialised once per session (init compiles take seconds)."""

from __future__ import annotations

import jax
import pytest

from cervix_jax import models

TINY_NAMES = tuple(n for n in models.MODEL_NAMES if n.endswith("_tiny"))
FULL_NAMES = tuple(n for n in models.MODEL_NAMES if not n.endswith("_tiny"))


@pytest.fixture(scope="session")
def tiny():
    """``tiny(name, **options) -> (model, variables)``, cached per (name, options)."""
    cache = {}

    def get(name: str, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            model = models.create_model(name, 5, **options)
            cache[key] = (model, models.init_variables(model, jax.random.key(0), 32))
        return cache[key]

    return get
