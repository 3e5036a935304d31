"""DenseNet-121 with RCAN channel attention on the last dense layer (the paper's Model 3)."""

from __future__ import annotations

import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default.get_config(arg)
    config.model.name = "densenet121_rca"
    # Where the channel-attention layer sits and its reduction ratio (cervix_jax.models).
    config.model.options.ca_placement = "last_layer"
    config.model.options.ca_block = "ca"
    config.model.options.ca_reduction = 16
    return config
