"""Files written atomically: a reader sees the old file or the whole new one, never half.

The one home for it, used by the reports of ``train`` and the outputs of ``explain``: write to
a temporary name in the target's directory, then ``os.replace`` (atomic on POSIX within one
file system).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np


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
