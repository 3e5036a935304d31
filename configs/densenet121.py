"""DenseNet-121, the paper's Model 2 (head Dropout(0.5) + Linear(1024, 5))."""

from __future__ import annotations

import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default.get_config(arg)
    config.model.name = "densenet121"
    return config
