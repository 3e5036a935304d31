"""torchvision ImageNet weights -> Flax variables, and the converted-checkpoint format.

Flow (what ``tools/convert_torchvision.py`` and ``config.init_from`` do)::

    state_dict = read_state_dict("densenet121-a639ec97.pth")      # or .safetensors
    pretrained = from_torchvision("densenet121", state_dict)      # {'params', 'batch_stats'}
    save_converted(pretrained, out_dir, arch="densenet121")       # Orbax, written atomically
    ...
    pretrained = load_converted(out_dir)                          # training side
    variables, fresh = merge_pretrained(init_variables(model, rng), pretrained)

``merge_pretrained`` keeps the fresh classifier ``head`` (5 classes instead of ImageNet's 1000)
and fresh values for parameters the checkpoint does not have (the channel-attention layer of
``densenet121_rca``), and raises on anything else that does not fit.

Layout conversion: conv kernels OIHW -> HWIO, linear weights (out, in) -> (in, out); BatchNorm
``weight/bias/running_mean/running_var`` -> ``params.scale/bias``, ``batch_stats.mean/var``;
``num_batches_tracked`` is ignored. Old-style DenseNet keys (``norm.1``, ``conv.2``, as in
torchvision's own ``densenet121-a639ec97.pth``) are accepted.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

TORCHVISION_ARCHS = ("resnet50", "densenet121", "densenet121_rca")
HEAD = "head"
_HEAD_KEYS = {"resnet50": "fc", "densenet121": "classifier", "densenet121_rca": "classifier"}
_RESNET_RENAMES = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}
_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
# torchvision's original DenseNet checkpoints name layer modules 'norm.1' instead of 'norm1'.
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_VARIABLES_DIR = "variables"
_METADATA_FILE = "metadata.json"


def _model(arch: str, num_classes: int):
    # Imported here: cervix_jax.models imports this module.
    from cervix_jax.models.densenet import DenseNet
    from cervix_jax.models.resnet import ResNet

    if arch == "resnet50":
        return ResNet(num_classes=num_classes)
    # densenet121_rca's backbone *is* densenet121: the attention layer has no ImageNet weights.
    return DenseNet(num_classes=num_classes)


def _torch_module_path(arch: str, modules: tuple[str, ...]) -> str:
    if modules[0] == HEAD:
        return _HEAD_KEYS[arch]
    if arch == "resnet50":
        return ".".join(_RESNET_RENAMES.get(m, m.replace("_", ".")) for m in modules)
    return ".".join(["features", *(m.replace("_", ".") for m in modules)])


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4:  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(reversed(shape))  # (in, out) -> (out, in); 1-D unchanged


def _to_flax(array: np.ndarray) -> np.ndarray:
    if array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    return np.transpose(array)


def _normalize_keys(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):  # saved from DataParallel
            key = key[len("module.") :]
        match = _OLD_DENSENET_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        out[key] = np.asarray(value)
    return out


def _check_arch(arch: str) -> None:
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(
            f"arch={arch!r} has no torchvision weights; use one of {TORCHVISION_ARCHS}."
        )


def _leaf_map(arch: str, num_classes: int) -> dict[tuple[str, ...], tuple[str, tuple[int, ...]]]:
    """Flax path -> (torchvision key, Flax shape) for every parameter and BatchNorm statistic."""
    model = _model(arch, num_classes)
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
    )
    flat = traverse_util.flatten_dict({c: abstract[c] for c in ("params", "batch_stats")})
    out = {}
    for path, value in flat.items():
        collection, *modules, leaf = path
        key = f"{_torch_module_path(arch, tuple(modules))}.{_LEAF_NAMES[collection, leaf]}"
        out[path] = (key, tuple(value.shape))
    return out


def expected_torch_keys(arch: str, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """torchvision state-dict keys (without ``num_batches_tracked``) and shapes for ``arch``."""
    _check_arch(arch)
    return {key: _torch_shape(shape) for key, shape in _leaf_map(arch, num_classes).values()}


def from_torchvision(arch: str, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Converts a torchvision state dict to Flax ``{'params', 'batch_stats'}`` (numpy float32).

    Args:
      arch: ``'resnet50'``, ``'densenet121'`` or ``'densenet121_rca'`` (the latter converts the
        DenseNet-121 backbone; its channel-attention parameters are absent and are filled from
        a fresh initialisation by :func:`merge_pretrained`).
      state_dict: torchvision ``model.state_dict()`` as name -> array (numpy, or CPU tensors).
        The head keeps the checkpoint's number of classes (1000 for ImageNet).

    Raises:
      ValueError: naming every missing key, unexpected key and shape mismatch, or the tensors
        that hold NaN or infinite values (weights no training should start from).
    """
    _check_arch(arch)
    tensors = _normalize_keys(state_dict)
    head_weight = tensors.get(f"{_HEAD_KEYS[arch]}.weight")
    num_classes = int(head_weight.shape[0]) if head_weight is not None else 1000
    leaf_map = _leaf_map(arch, num_classes)
    expected = {key: _torch_shape(shape) for key, shape in leaf_map.values()}

    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(
        k for k in set(tensors) - set(expected) if not k.endswith("num_batches_tracked")
    )
    mismatched = [
        f"{k}: expected {expected[k]}, found {tuple(tensors[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tuple(tensors[k].shape) != expected[k]
    ]
    if missing or unexpected or mismatched:
        found = len(set(expected) & set(tensors))
        lines = [
            f"state dict does not match torchvision {arch} ({found} of {len(expected)} expected "
            "keys found):"
        ]
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in items)
        lines.append(
            "Pass the state dict of torchvision's own model of this architecture "
            "(torchvision.models.<arch>().state_dict())."
        )
        raise ValueError("\n".join(lines))

    _check_finite({key: tensors[key] for key in expected})
    flat = {
        path: np.ascontiguousarray(_to_flax(tensors[key]), dtype=np.float32)
        for path, (key, _) in leaf_map.items()
    }
    return traverse_util.unflatten_dict(flat)


def _check_finite(tensors: Mapping[str, np.ndarray]) -> None:
    """Raises ValueError naming the tensors with NaN or infinite values (the first five, and
    how many in all)."""
    bad = sorted(k for k, v in tensors.items() if not np.all(np.isfinite(np.asarray(v))))
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"state dict holds NaN or infinite values in {len(bad)} tensor(s): {shown}; "
            "these are not usable weights (a diverged or damaged checkpoint)."
        )


def merge_pretrained(
    fresh: Mapping[str, Any], pretrained: Mapping[str, Any], *, head: str = HEAD
) -> tuple[dict[str, Any], list[str]]:
    """Starts a model from converted weights.

    Args:
      fresh: ``{'params', 'batch_stats'}`` of the target model (e.g. ``init_variables``).
      pretrained: ``{'params', 'batch_stats'}`` from :func:`from_torchvision` /
        :func:`load_converted`.
      head: top-level module that is always kept fresh (the classifier).

    Returns:
      ``(variables, kept_fresh)``: the fresh tree with every pretrained value copied in, and the
      ``'/'``-joined paths that kept their fresh value (the head and, for ``densenet121_rca``,
      the channel-attention layer).

    Raises:
      ValueError: pretrained values absent from the model or of another shape, each named.
    """
    flat_fresh = traverse_util.flatten_dict(dict(fresh))
    flat_pre = traverse_util.flatten_dict(dict(pretrained))

    def is_head(path: tuple[str, ...]) -> bool:
        return len(path) > 1 and path[1] == head

    merged, kept_fresh, mismatched = {}, [], []
    for path, value in flat_fresh.items():
        source = flat_pre.get(path)
        if is_head(path) or source is None:
            merged[path] = value
            kept_fresh.append("/".join(path))
        elif tuple(source.shape) != tuple(value.shape):
            mismatched.append(
                f"{'/'.join(path)}: model {tuple(value.shape)}, pretrained {tuple(source.shape)}"
            )
        else:
            merged[path] = jnp.asarray(source, dtype=value.dtype)
    unused = sorted("/".join(p) for p in set(flat_pre) - set(flat_fresh) if not is_head(p))
    if mismatched or unused:
        found = len(flat_fresh) - len(kept_fresh) + len(mismatched)
        lines = [
            f"pretrained weights do not fit the model ({found} of {len(flat_fresh)} model "
            "values found in them):"
        ]
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}):")
            lines.extend(f"    {m}" for m in mismatched)
        if unused:
            lines.append(f"  not in the model ({len(unused)}):")
            lines.extend(f"    {u}" for u in unused)
        lines.append("Convert weights of the same architecture as config.model.name.")
        raise ValueError("\n".join(lines))
    return traverse_util.unflatten_dict(merged), sorted(kept_fresh)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` (numpy only) or ``.pth``/``.pt`` (needs torch) state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except SafetensorError as e:
            raise ValueError(f"{path}: not a readable .safetensors file ({e}).") from None
    if path.suffix in (".pth", ".pt", ".bin"):
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"{path}: reading .pth needs torch (pip install -r requirements-parity.txt), "
                "or convert the weights to .safetensors first."
            ) from e
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
            raise ValueError(f"{path}: not a readable torch state dict ({e}).") from None
        if isinstance(loaded, Mapping) and "state_dict" in loaded:
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: expected a state dict (name -> tensor), not {type(loaded)}.")
        return {k: v.detach().cpu().numpy() for k, v in loaded.items()}
    raise ValueError(f"{path}: unknown format {path.suffix!r}; use a .pth or .safetensors file.")


def save_converted(
    variables: Mapping[str, Any],
    directory: str | os.PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes ``{'params', 'batch_stats'}`` as an Orbax checkpoint under ``directory``.

    Layout: ``directory/variables/`` (Orbax ``StandardCheckpointer``) and
    ``directory/metadata.json``. Written into a temporary sibling folder, then renamed, so a
    crash never leaves a half-written ``directory``.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists; remove it or pass overwrite=True (--force).")
    if directory.exists() and not (directory / _VARIABLES_DIR).is_dir():
        # overwrite replaces a converted checkpoint, never a folder (or file) of anything else.
        raise FileExistsError(
            f"{directory} exists and is not a converted checkpoint; not replacing it, even with "
            "overwrite=True (--force): choose another output folder."
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        tree = {k: jax.tree.map(np.asarray, dict(variables[k])) for k in ("params", "batch_stats")}
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp / _VARIABLES_DIR, tree)
        checkpointer.wait_until_finished()
        checkpointer.close()
        (tmp / _METADATA_FILE).write_text(json.dumps(dict(metadata or {}), indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_converted(directory: str | os.PathLike) -> dict[str, Any]:
    """Reads a checkpoint written by ``tools/convert_torchvision.py`` / :func:`save_converted`.

    Returns ``{'params', 'batch_stats'}`` as numpy arrays (host memory; place them with the
    training sharding, and use :func:`merge_pretrained` to fit them to a model).
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    path = directory / _VARIABLES_DIR
    if not path.is_dir():
        raise FileNotFoundError(
            f"{directory} is not a converted torchvision checkpoint (no {_VARIABLES_DIR}/); "
            "make one with tools/convert_torchvision.py --arch=... --src=... --out=DIR."
        )
    checkpointer = ocp.StandardCheckpointer()
    metadata = checkpointer.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype),
        dict(tree),
        is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
    )
    restored = checkpointer.restore(path, target)
    checkpointer.close()
    return jax.tree.map(np.asarray, restored)


def converted_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """``metadata.json`` of a converted checkpoint (arch, source file, sha256, classes)."""
    path = Path(directory) / _METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
