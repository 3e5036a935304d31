"""Our JAX code against torchvision + captum, same work, same process, alternating sides.

    pip install -r requirements-bench.txt      # torch, torchvision, captum
    python bench/compare_torch.py --work=train,infer,ig --models=resnet50,densenet121

One JSON line per (work, model): ``ours_images_per_s`` and ``theirs_images_per_s`` (medians
over ``--repeats``, each repeat ``--iters`` calls), their ``spread``, and ``ratio`` = ours /
theirs, the median of the ratios of each A/B pair (pairs are timed back to back, so a machine
that drifts in speed affects both sides alike); ``compile_s`` is our first call (compilation
included). The first line is the environment (versions, threads, load average). For ``ig``,
with ``--ig_peak_rss`` (default), each side then runs once more in a process of its own and
the row gets ``ours_peak_rss_mb`` / ``theirs_peak_rss_mb``.

The work is the same on both sides:
- ``train``: one optimizer step (Adam 1e-3, cross-entropy, the paper's Dropout(0.5) + Linear
  head, train-mode BatchNorm) on a batch of uint8 images that are normalised inside the step;
  ours is the project's own jitted train step (``cervix_jax.train``) without augmentation.
- ``infer``: eval-mode logits of a float32 batch. For ``infer`` and ``ig`` both sides hold the
  same weights (``_shared_model``), so they compute the same function.
- ``ig``: integrated gradients of the softmax probability of the predicted class for one pixel-space
  image (normalised inside the function), black baseline, ``--ig_steps`` Gauss-Legendre points,
  ``--ig_chunk`` points per batch (captum's ``internal_batch_size``); each side's relative
  completeness error is printed so speed is compared at equal accuracy.

``densenet121_rca`` on the torch side is torchvision's DenseNet-121 with the RCAN channel
attention layer applied to the new feature maps of ``denseblock4.denselayer16``.

On a GPU machine, ``--torch_device=cuda --precision=bfloat16`` compares our bfloat16 train step
and inference (models' compute dtype) with PyTorch AMP (``torch.autocast`` in bfloat16) on the
same GPU; our side runs on JAX's default backend, the GPU when jaxlib has CUDA (the header line
records both devices). ``.item()`` at the end of every torch call waits for the GPU.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

import _common  # bench/_common.py (a script's own folder is on sys.path)

try:
    import torch
    import torchvision
except ImportError:
    sys.exit(
        "bench/compare_torch.py needs torch and torchvision: pip install -r requirements-bench.txt"
    )

_WORK = flags.DEFINE_list("work", ["train", "infer", "ig"], "train, infer and/or ig.")
_MODELS = flags.DEFINE_list(
    "models", ["resnet50", "densenet121", "densenet121_rca"], "Models to compare."
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Train-step batch.")
_INFER_BATCH = flags.DEFINE_integer("infer_batch_size", 32, "Inference batch.")
_IG_STEPS = flags.DEFINE_integer("ig_steps", 50, "Integration points.")
_IG_CHUNK = flags.DEFINE_integer("ig_chunk", 50, "Integration points per batch (both sides).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed A/B pairs per row.")
_ITERS = flags.DEFINE_integer("iters", 2, "Calls per timed block.")
_TORCH_THREADS = flags.DEFINE_integer(
    "torch_threads", 0, "torch.set_num_threads (0 = torch's default, one per core)."
)
_IG_PEAK = flags.DEFINE_bool(
    "ig_peak_rss", True, "Also run each IG side once in a process of its own for its peak RSS."
)
_TORCH_DEVICE = flags.DEFINE_string(
    "torch_device", "cpu", "Device of the torch side: cpu, or cuda on a GPU machine."
)
_PRECISION = flags.DEFINE_enum(
    "precision",
    "float32",
    ["float32", "bfloat16"],
    "train/infer precision: float32, or bfloat16 = torch.autocast on the torch side (AMP) and "
    "the models' bfloat16 compute dtype on ours (parameters stay float32 on both). IG: float32.",
)
_PEAK_WORKER = flags.DEFINE_enum(
    "peak_worker", "", ["", "ours", "theirs"], "Internal: one IG call here, print peak RSS."
)
_NUM_CLASSES = 5
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- torch side
def _torch_model(name: str):
    if name.startswith("resnet50"):
        model = torchvision.models.resnet50(num_classes=_NUM_CLASSES)
        model.fc = torch.nn.Sequential(torch.nn.Dropout(0.5), model.fc)
    elif name.startswith("densenet121"):
        model = torchvision.models.densenet121(num_classes=_NUM_CLASSES)
        model.classifier = torch.nn.Sequential(torch.nn.Dropout(0.5), model.classifier)
        if name == "densenet121_rca":
            layer = model.features.denseblock4.denselayer16
            layer.conv2 = torch.nn.Sequential(layer.conv2, _ChannelAttention(32, 16))
    else:
        raise ValueError(f"No torchvision counterpart for {name!r}.")
    return model


def _shared_model(name: str):
    """A torchvision model with BatchNorm statistics of random inputs, in eval mode.

    Random initial running statistics (mean 0, variance 1) make the deep networks' logits huge
    and the softmax saturated, a poor integrand for IG; statistics gathered in train mode on
    two random batches give moderate logits. Both sides of ``infer`` and ``ig`` use these
    weights (ours via ``cervix_jax.models.from_torchvision``), so they compute the same function
    and their completeness errors are comparable.
    """
    torch.manual_seed(0)
    model = _torch_model(name)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, _IMAGE_SIZE.value, _IMAGE_SIZE.value))
    return model.eval()


def _predicted_class(model, image) -> int:
    """The class IG explains: the model's prediction for ``image`` (as in practice)."""
    x = torch.from_numpy(image[None]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        return int(model(_torch_normalize(x)).argmax())


def _our_variables(name: str, model) -> dict:
    """Our variables holding the torch model's weights (the ``Dropout + Linear`` head renamed)."""
    from cervix_jax import models

    state = {}
    for key, value in model.state_dict().items():
        for head in ("fc.1.", "classifier.1."):
            if key.startswith(head):
                key = head.replace(".1.", ".") + key[len(head) :]
        state[key] = value.cpu().numpy()
    arch = "densenet121" if name == "densenet121_rca" else name
    return models.from_torchvision(arch, state)


class _ChannelAttention(torch.nn.Module):
    """RCAN's layer: GAP, 1x1 conv C->C/r, ReLU, 1x1 conv C/r->C, sigmoid, rescale."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Conv2d(channels, channels // reduction, 1),
            torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(channels // reduction, channels, 1),
            torch.nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.body(x)


def _torch_normalize(images_uint8):
    mean = torch.tensor(_MEAN, device=images_uint8.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(_STD, device=images_uint8.device).view(1, 3, 1, 1) * 255.0
    return (images_uint8.float() - mean) / std


def _device():
    return torch.device(_TORCH_DEVICE.value)


def _autocast():
    """PyTorch AMP in bfloat16 when ``--precision=bfloat16``, a no-op context otherwise."""
    return torch.autocast(
        device_type=_device().type,
        dtype=torch.bfloat16,
        enabled=_PRECISION.value == "bfloat16",
    )


def _on_device(array, channels_first: bool = True):
    x = torch.from_numpy(array)
    if channels_first:
        x = x.permute(0, 3, 1, 2).contiguous()
    return x.to(_device())


def _torch_train(name: str, images, labels):
    model = _torch_model(name).to(_device()).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = _on_device(images)
    y = _on_device(labels, channels_first=False).long()

    def run():
        opt.zero_grad(set_to_none=True)
        with _autocast():
            loss = loss_fn(model(_torch_normalize(x)), y)
        loss.backward()
        opt.step()
        return loss.item()

    return run


def _torch_infer(model, images):
    model = model.to(_device())
    x = _on_device(images)

    def run():
        with torch.inference_mode(), _autocast():
            return model(x).sum().item()

    return run


def _torch_ig(model, image, target: int):
    from captum.attr import IntegratedGradients

    def prob(x):
        return torch.softmax(model(_torch_normalize(x)), dim=-1)

    model = model.to(_device())
    ig = IntegratedGradients(prob)
    x = _on_device(image[None])
    baseline = torch.zeros_like(x)
    result = {}

    def run():
        attributions, delta = ig.attribute(
            x,
            baselines=baseline,
            target=target,
            n_steps=_IG_STEPS.value,
            method="gausslegendre",
            internal_batch_size=_IG_CHUNK.value,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            gap = (prob(x)[0, target] - prob(baseline)[0, target]).abs().item()
        result["completeness_error"] = abs(delta.item()) / max(gap, 1e-12)
        return attributions

    return run, result


# ------------------------------------------------------------------------------- our side
def _our_train(name: str, images, labels):
    import jax
    import optax

    from cervix_jax import data, models
    from cervix_jax.train import create_state, make_train_step
    from cervix_jax.train import mesh as mesh_lib

    model = models.create_model(name, _NUM_CLASSES, dtype=_PRECISION.value)
    variables = models.init_variables(model, jax.random.key(0), images.shape)
    tx = optax.adam(1e-3)
    mesh = mesh_lib.make_mesh()
    state = create_state(variables, tx, jax.random.key_data(jax.random.key(1)))
    step = make_train_step(model, tx, mesh, augment_fn=None, normalize_fn=data.normalize)
    batch = mesh_lib.global_batch({"image": images, "label": labels}, mesh)
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], batch)
        return float(metrics["loss"])

    return run


def _our_infer(name: str, variables, images):
    import jax

    from cervix_jax import models

    model = models.create_model(name, _NUM_CLASSES, dtype=_PRECISION.value)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    x = jax.device_put(images)

    def run():
        return float(forward(variables, x).sum())

    return run


def _our_ig(name: str, variables, image, target: int):
    import jax
    import jax.numpy as jnp

    from cervix_jax import explain, models

    model = models.create_model(name, _NUM_CLASSES)

    def logits_fn(img, variables):
        return model.apply(variables, explain.to_normalized_space(img)[None], train=False)[0]

    f = explain.class_score_fn(logits_fn, "probability")
    x = jnp.asarray(image)
    baseline = jnp.zeros_like(x)
    f_args = (jnp.int32(target), variables)
    compiled = explain.lower_integrated_gradients(
        f, x, baseline, steps=_IG_STEPS.value, chunk_size=_IG_CHUNK.value, f_args=f_args
    ).compile()
    result = {}

    def run():
        attributions, error, delta = jax.block_until_ready(compiled(x, baseline, f_args))
        result["completeness_error"] = abs(float(error)) / max(abs(float(delta)), 1e-12)
        return attributions

    return run, result


# ---------------------------------------------------------------------------- measurement
def _time_block(run, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        run()
    return (time.perf_counter() - start) / iters


def _compare(work: str, name: str) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    size = _IMAGE_SIZE.value
    extra_ours: dict = {}
    extra_theirs: dict = {}
    if work == "train":
        n = _BATCH.value
        images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        labels = rng.integers(0, _NUM_CLASSES, (n,), dtype=np.int32)
        ours, theirs = _our_train(name, images, labels), _torch_train(name, images, labels)
    elif work == "infer":
        n = _INFER_BATCH.value
        images = rng.standard_normal((n, size, size, 3), dtype=np.float32)
        model = _shared_model(name)
        ours = _our_infer(name, _our_variables(name, model), images)
        theirs = _torch_infer(model, images)
    elif work == "ig":
        n = 1
        image = _ig_image()
        model = _shared_model(name)
        target = _predicted_class(model, image)
        ours, extra_ours = _our_ig(name, _our_variables(name, model), image, target)
        theirs, extra_theirs = _torch_ig(model, image, target)
    else:
        raise ValueError(f"--work={work!r}: expected train, infer or ig.")

    start = time.perf_counter()
    ours()  # compilation and first-call allocations
    compile_s = time.perf_counter() - start
    theirs()
    pairs = []
    for _ in range(_REPEATS.value):
        pairs.append((_time_block(ours, _ITERS.value), _time_block(theirs, _ITERS.value)))
    ours_ips = [n / a for a, _ in pairs]
    theirs_ips = [n / b for _, b in pairs]
    ratios = [b / a for a, b in pairs]
    row = {
        "work": work,
        "model": name,
        "image_size": size,
        "batch_size": n,
        "devices": 1,
        "dtype": "float32" if work == "ig" else _PRECISION.value,
        "torch_device": _TORCH_DEVICE.value,
        "ours_images_per_s": round(statistics.median(ours_ips), 3),
        "theirs_images_per_s": round(statistics.median(theirs_ips), 3),
        "ours_spread": _common.summarize([a for a, _ in pairs], n)["spread"],
        "theirs_spread": _common.summarize([b for _, b in pairs], n)["spread"],
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "compile_s": round(compile_s, 2),  # ours: compilation + first call
        "repeats": _REPEATS.value,
        "iters": _ITERS.value,
    }
    if work == "ig":
        row.update(
            steps=_IG_STEPS.value,
            chunk_size=_IG_CHUNK.value,
            ours_completeness_error=extra_ours.get("completeness_error"),
            theirs_completeness_error=extra_theirs.get("completeness_error"),
        )
    return row


def _ig_image():
    import numpy as np

    size = _IMAGE_SIZE.value
    return np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype(np.float32)


def _peak_worker(side: str, name: str) -> dict:
    """One IG call (after compilation for ours) of one side alone; its process's peak RSS."""
    model = _shared_model(name)
    if side == "ours":
        target = _predicted_class(model, _ig_image())
        run, extra = _our_ig(name, _our_variables(name, model), _ig_image(), target)
    else:
        run, extra = _torch_ig(model, _ig_image(), _predicted_class(model, _ig_image()))
    run()
    return {"side": side, "peak_rss_mb": _common.peak_rss_mb(), **extra}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss(name: str) -> dict:
    row = {}
    for side in ("ours", "theirs"):
        args = [f"--peak_worker={side}", f"--models={name}", f"--image_size={_IMAGE_SIZE.value}"]
        args += [f"--ig_steps={_IG_STEPS.value}", f"--ig_chunk={_IG_CHUNK.value}"]
        record = _common.run_isolated(__file__, args)
        row[f"{side}_peak_rss_mb"] = record.get("peak_rss_mb", record.get("error"))
    return row


def main(argv):
    del argv
    runtime.setup()  # before anything starts a JAX backend

    if _TORCH_THREADS.value:
        torch.set_num_threads(_TORCH_THREADS.value)
    if _PEAK_WORKER.value:
        _common.emit(_peak_worker(_PEAK_WORKER.value, _MODELS.value[0]))
        return
    import captum

    header = {
        **_common.environment(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "captum": captum.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_device": _TORCH_DEVICE.value,
        "torch_device_name": (
            torch.cuda.get_device_name() if _device().type == "cuda" else _cpu_name()
        ),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _common.emit({"environment": header})
    for work in _WORK.value:
        for name in _MODELS.value:
            if work != "train" and name == "densenet121_rca" and "densenet121" in _MODELS.value:
                continue  # inference and IG costs are DenseNet-121's to within the CA layer
            row = _compare(work, name)
            if work == "ig" and _IG_PEAK.value:
                row.update(_peak_rss(name))
            row["load_average_1m"] = round(os.getloadavg()[0], 2)
            _common.emit(row)


if __name__ == "__main__":
    app.run(main)
