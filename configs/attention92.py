"""Residual Attention Network 92 (Wang et al. 2017), one of the paper's comparison models."""

from __future__ import annotations

import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default.get_config(arg)
    config.model.name = "attention92"
    return config
