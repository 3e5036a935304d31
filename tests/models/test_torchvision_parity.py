"""Numerical parity with torchvision (needs requirements-parity.txt: torch, torchvision).

Randomly initialised torchvision models in eval mode, with every BatchNorm given random running
statistics and affine parameters, are converted with ``from_torchvision``; the Flax logits must
equal torchvision's within 1e-4 relative on the same images (NCHW there, NHWC here).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax import models
from cervix_jax.models import torchvision as tv
from cervix_jax.models.channel_attention import ChannelAttention
from cervix_jax.models.residual_attention import upsample_bilinear
from tools import convert_torchvision

torch = pytest.importorskip(
    "torch",
    reason="parity tests need torch and torchvision: pip install -r requirements-parity.txt",
)
torchvision = pytest.importorskip(
    "torchvision",
    reason="parity tests need torch and torchvision: pip install -r requirements-parity.txt",
)

pytestmark = pytest.mark.parity

RTOL = 1e-4


def _randomize_batch_norms(model, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))


def _assert_close_relative(actual, expected) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = np.abs(expected).max()
    assert scale > 1e-3  # a non-trivial output
    error = np.abs(actual - expected).max() / scale
    assert error < RTOL, f"max relative error {error:.2e} >= {RTOL}"


@pytest.mark.parametrize("arch", ["resnet50", "densenet121"])
def test_logits_match_torchvision(arch):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(num_classes=5).eval()
    _randomize_batch_norms(reference, seed=1)
    images = np.random.default_rng(2).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(images)).numpy()

    state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
    variables = models.from_torchvision(arch, state_dict)
    model = models.create_model(arch, 5)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        variables, jnp.asarray(images.transpose(0, 2, 3, 1))
    )
    _assert_close_relative(logits, expected)


def test_pth_file_round_trip(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.densenet121(num_classes=5)
    path = tmp_path / "densenet121.pth"
    torch.save(reference.state_dict(), path)
    loaded = tv.read_state_dict(path)
    assert set(loaded) == set(reference.state_dict())
    variables = models.from_torchvision("densenet121", loaded)
    np.testing.assert_array_equal(
        variables["params"]["head"]["kernel"], reference.classifier.weight.detach().numpy().T
    )


def test_pth_to_training_start_end_to_end(tmp_path):
    """.pth -> tools/convert_torchvision.py -> load_converted -> merge into a 5-class model:
    the backbone's feature map equals torchvision's, the head is the fresh one."""
    torch.manual_seed(0)
    reference = torchvision.models.densenet121().eval()  # ImageNet-shaped: 1000 classes
    _randomize_batch_norms(reference, seed=3)
    src = tmp_path / "densenet121.pth"
    torch.save(reference.state_dict(), src)
    convert_torchvision.convert("densenet121", str(src), str(tmp_path / "converted"))

    model = models.create_model("densenet121", 5)
    fresh = jax.tree.map(
        lambda s: jnp.full(s.shape, 0.5, s.dtype), models.abstract_variables(model, 64)
    )
    variables, kept_fresh = models.merge_pretrained(
        fresh, models.load_converted(tmp_path / "converted")
    )
    assert kept_fresh == ["params/head/bias", "params/head/kernel"]

    images = np.random.default_rng(4).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = torch.relu(reference.features(torch.from_numpy(images))).numpy()
    logits, state = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(
        variables, jnp.asarray(images.transpose(0, 2, 3, 1))
    )
    _assert_close_relative(state["intermediates"]["last_conv"][0], expected.transpose(0, 2, 3, 1))
    assert logits.shape == (2, 5)


def test_channel_attention_matches_the_papers_layer():
    """Our ChannelAttention against the paper's CALayer (avg pool, 1x1 convs, sigmoid)."""
    torch.manual_seed(0)
    channels, reduction = 32, 16
    squeeze = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Conv2d(channels, channels // reduction, 1, bias=True),
        torch.nn.ReLU(),
        torch.nn.Conv2d(channels // reduction, channels, 1, bias=True),
        torch.nn.Sigmoid(),
    )
    x = np.random.default_rng(0).standard_normal((2, channels, 7, 5)).astype(np.float32)
    with torch.no_grad():
        expected = (torch.from_numpy(x) * squeeze(torch.from_numpy(x))).numpy()

    def kernel(conv):
        return conv.weight.detach().numpy().transpose(2, 3, 1, 0)

    params = {
        "conv_down": {"kernel": kernel(squeeze[1]), "bias": squeeze[1].bias.detach().numpy()},
        "conv_up": {"kernel": kernel(squeeze[3]), "bias": squeeze[3].bias.detach().numpy()},
    }
    actual = ChannelAttention(reduction).apply({"params": params}, x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(actual, expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(
    "in_size, out_size", [((4, 4), (7, 7)), ((7, 4), (13, 8)), ((1, 3), (2, 5))]
)
def test_bilinear_upsampling_matches_torch(align_corners, in_size, out_size):
    x = np.random.default_rng(0).standard_normal((2, 3, *in_size)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=out_size, mode="bilinear", align_corners=align_corners
    ).numpy()
    if align_corners:  # the paper's nn.UpsamplingBilinear2d is exactly this mode
        layer = torch.nn.UpsamplingBilinear2d(size=out_size)
        np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), expected)
    actual = upsample_bilinear(jnp.asarray(x.transpose(0, 2, 3, 1)), out_size, align_corners)
    np.testing.assert_allclose(actual, expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
