"""Files written atomically: a reader sees the old file or the whole new one, never half.

The one home for it, used by the reports of ``train`` and the outputs of ``explain``: write to
a temporary name in the target's directory, then ``os.replace`` (atomic on POSIX within one
file system). `check_new_file` is what tools ask of an output file before any work.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def check_new_file(
    path: str | os.PathLike,
    *,
    suffixes: Sequence[str] = (),
    force: bool = False,
    name: str = "--out",
) -> None:
    """Raises ``ValueError`` (naming ``name=path``) unless ``path`` may be written: a suffix in
    ``suffixes`` (when given), not a folder, not inside a file, and, unless ``force``, new."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{name}={path}: expected a file ending in {' or '.join(suffixes)}.")
    if path.is_dir():
        raise ValueError(f"{name}={path} is a folder; expected a file name.")
    if any(parent.is_file() for parent in path.parents):
        raise ValueError(f"{name}={path}: a folder on that path is a file.")
    if path.exists() and not force:
        raise ValueError(f"{name}={path} exists; pass --force to replace it, or choose another.")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``, renamed to ``path`` when the block succeeds.

    The temporary name ends with ``path``'s suffix, so writers that infer the format from it
    (``np.save``, PIL, matplotlib) write the right one. On an error it is removed and ``path``
    is left as it was. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Writes ``obj`` as indented JSON (and a final newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Saves ``array`` in ``.npy`` format to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
