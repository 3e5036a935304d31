"""models.pooled_features: exactly what the classifier head reads, for every architecture."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import models


# All models end in the same shared code (`_common.last_conv_to_logits`): two families suffice.
@pytest.mark.parametrize("name", ["resnet50_tiny", "densenet121_rca_tiny"])
def test_the_head_of_the_pooled_features_is_the_logits(tiny, name):
    model, variables = tiny(name)
    x = jax.random.normal(jax.random.key(1), (3, 32, 32, 3), jnp.float32)
    head = variables["params"]["head"]

    def outputs(v, x):
        _, state = model.apply(v, x, train=False, mutable=["intermediates"])
        last_conv = state["intermediates"][models.LAST_CONV][0]
        return models.pooled_features(model, v, x), model.apply(v, x, train=False), last_conv

    features, logits, last_conv = jax.jit(outputs)(variables, x)

    width = head["kernel"].shape[0]
    assert features.shape == (3, width) and features.dtype == jnp.float32
    np.testing.assert_allclose(
        features @ head["kernel"] + head["bias"], logits, rtol=1e-5, atol=1e-5
    )
    # The features are the mean over space of the last conv map (what Grad-CAM reads).
    np.testing.assert_allclose(features, last_conv.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    assert float(jnp.std(features)) > 0.0
