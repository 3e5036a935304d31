"""ResNet-50, the paper's baseline (torchvision architecture, head Dropout(0.5) + Linear)."""

from __future__ import annotations

import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default.get_config(arg)
    config.model.name = "resnet50"
    return config
