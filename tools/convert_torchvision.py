"""Converts torchvision ImageNet weights to an Orbax checkpoint that training can start from.

    python tools/convert_torchvision.py --arch=densenet121 \
        --src=densenet121-a639ec97.pth --out=pretrained/densenet121

Then train with ``--config=configs/rca.py --config.init_from=pretrained/densenet121``: the
classifier head is replaced by a fresh 5-class one and, for ``densenet121_rca``, the
channel-attention layer starts fresh (``cervix_jax.models.merge_pretrained``).

``--src`` is a torchvision state dict: ``.pth`` (read with ``torch.load(weights_only=True)``;
needs ``pip install -r requirements-parity.txt``) or ``.safetensors`` (numpy only). The
output folder holds ``variables/`` (Orbax) and ``metadata.json``; it is written atomically.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import models, runtime
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

_ARCH = flags.DEFINE_enum("arch", None, list(models.TORCHVISION_ARCHS), "Architecture.")
_SRC = flags.DEFINE_string("src", None, "torchvision state dict: .pth or .safetensors.")
_OUT = flags.DEFINE_string("out", None, "Output folder (Orbax checkpoint + metadata.json).")
_FORCE = flags.DEFINE_bool("force", False, "Replace --out if it exists.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert(arch: str, src: str, out: str, *, force: bool = False) -> Path:
    """Reads ``src``, converts it for ``arch`` and writes ``out``; returns the output folder."""
    src_path = Path(src)
    state_dict = models.read_state_dict(src_path)
    variables = models.from_torchvision(arch, state_dict)
    metadata = {
        "arch": arch,
        "source": src_path.name,
        "source_sha256": _sha256(src_path),
        "num_classes": int(variables["params"]["head"]["kernel"].shape[-1]),
        "num_params": models.count_params(variables["params"]),
    }
    return models.save_converted(variables, out, metadata=metadata, overwrite=force)


READABLE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def _check_flags() -> None:
    """Refuses a missing or unreadable ``--src`` and an ``--out`` that would be written over
    (one line each), before any weights are read."""
    src, out = Path(_SRC.value), Path(_OUT.value)
    if not src.is_file():
        raise ValueError(f"--src={src}: no such file.")
    if src.suffix not in READABLE_SUFFIXES:
        raise ValueError(
            f"--src={src}: unknown format {src.suffix!r}; give a .pth or .safetensors file."
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out={out} is a file; give a folder.")
    if out.exists() and not _FORCE.value:
        raise ValueError(f"--out={out} exists; remove it, or pass --force to replace it.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    try:
        _check_flags()
        out = convert(_ARCH.value, _SRC.value, _OUT.value, force=_FORCE.value)
    except (ValueError, OSError, ImportError) as e:
        # Every message names the file (or the tensors) and what to do.
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"wrote {out} ({models.converted_metadata(out)})")


if __name__ == "__main__":
    flags.mark_flags_as_required(["arch", "src", "out"])
    app.run(main)
