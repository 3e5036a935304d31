"""What a command left on disk: a snapshot of a folder to compare before and after."""

from __future__ import annotations

import hashlib
import os


def snapshot(folder: str | os.PathLike) -> dict[str, str]:
    """``{relative path: sha256 of the bytes}`` of every file, and ``'dir'`` for every folder,
    below ``folder`` ({} if it does not exist)."""
    folder = os.fspath(folder)
    tree: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            tree[os.path.relpath(os.path.join(root, d), folder)] = "dir"
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                tree[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return tree
