"""What the training loop needs from a dataset, and an in-memory implementation.

The loop talks to a small ``DataModule`` interface: class names, split sizes, a checkpointable
per-process training iterator, and deterministic per-process evaluation batches. SIPaKMeD goes
through ``cervix_jax.data`` (see ``loop.build_data_module``); ``ArrayDataModule`` serves numpy
arrays (tests, benchmarks, quick experiments) through the same grain machinery.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Protocol

import grain.python as grain
import jax
import numpy as np


class DataModule(Protocol):
    """Interface used by ``train_and_evaluate``.

    Attributes:
      class_names: names in label order.
      train_labels: ``[N_train] int`` labels of the training split (class-balanced loss).
    """

    class_names: Sequence[str]
    train_labels: np.ndarray

    def num_examples(self, split: str) -> int:
        """Number of examples of ``split`` (``train``, ``val`` or ``test``) over all processes."""

    def train_iterator(
        self, local_batch_size: int, seed: int, start_step: int = 0
    ) -> Iterator[dict]:
        """Endless, shuffled (reshuffled every epoch), per-process batches with
        ``get_state``/``set_state`` (a grain ``DataLoader`` iterator), remainder dropped,
        starting at global step ``start_step``."""

    def eval_batches(self, split: str, local_batch_size: int) -> Iterator[dict]:
        """Every example of ``split`` exactly once across processes, padded (``mask`` False) to
        the same number of full batches on every process."""


class _Records:
    """Random-access source over a dict of equally long arrays (one record = one row)."""

    def __init__(self, arrays: dict[str, np.ndarray], indices: np.ndarray):
        self._arrays = arrays
        self._indices = np.asarray(indices)

    def __len__(self) -> int:
        return len(self._indices)

    def __repr__(self) -> str:
        # grain checks repr(source) when restoring an iterator: it must not hold an address.
        return f"_Records(keys={sorted(self._arrays)}, n={len(self._indices)})"

    def __getitem__(self, i: int) -> dict:
        j = int(self._indices[i])
        rec = {k: v[j] for k, v in self._arrays.items()}
        rec["index"] = np.int32(j)
        rec["mask"] = np.bool_(True)
        return rec


def _pad_batch(records: list[dict], template: dict, size: int) -> dict:
    out = {}
    for k, v in template.items():
        col = [r[k] for r in records]
        filler = np.zeros_like(v)
        col += [filler] * (size - len(records))
        out[k] = np.stack(col)
    return out


def eval_shard(num: int, local_batch_size: int) -> tuple[np.ndarray, int]:
    """This process's positions ``[0, num)`` (strided) and the number of batches every process
    runs, so collective evaluation steps line up across processes."""
    p, n = jax.process_index(), jax.process_count()
    mine = np.arange(p, num, n)
    per_process = math.ceil(num / n)
    return mine, max(1, math.ceil(per_process / local_batch_size))


class GlobalOrderView:
    """This process's rows of an endless sequence of shuffled global batches.

    Epoch ``e`` visits the records in the order ``permutation(seed, e)``; global batch ``b``
    is positions ``[b*G, (b+1)*G)`` of that order and process ``p`` serves rows
    ``[p*L, (p+1)*L)`` of it (``G = L * process_count``). Every process therefore loads only its
    own rows, yet the global batches (content and order) are the same for any number of
    processes, so a 2-process run reproduces a 1-process run. The remainder of an epoch
    (``N mod G`` records) is dropped. Element ``k`` of the view is a pure function of ``k``:
    grain's iterator state (one integer) is the data position, and ``start_step`` positions a
    new view at any global step without reading the data before it.
    """

    def __init__(
        self,
        source,
        local_batch_size: int,
        seed: int,
        start_step: int = 0,
        num_epochs: int = 10_000,
    ):
        self._source = source
        self._start = int(start_step) * local_batch_size
        self._local = local_batch_size
        self._global = local_batch_size * jax.process_count()
        self._proc = jax.process_index()
        self._seed = seed
        self.steps_per_epoch = len(source) // self._global
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training split has {len(source)} examples, fewer than one global batch "
                f"({self._global}); lower config.batch_size."
            )
        self._num_epochs = num_epochs
        self._perm_epoch = -1
        self._perm = None

    def __len__(self) -> int:
        return self.steps_per_epoch * self._local * self._num_epochs - self._start

    def __repr__(self) -> str:
        return (
            f"GlobalOrderView({self._source!r}, local_batch={self._local}, "
            f"global_batch={self._global}, process={self._proc}, seed={self._seed}, "
            f"start_step={self._start // self._local})"
        )

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self._seed, epoch])
            self._perm = rng.permutation(len(self._source))
            self._perm_epoch = epoch
        return self._perm

    def __getitem__(self, k: int):
        per_epoch = self.steps_per_epoch * self._local
        epoch, r = divmod(int(k) + self._start, per_epoch)
        b, j = divmod(r, self._local)
        pos = b * self._global + self._proc * self._local + j
        return self._source[int(self._permutation(epoch)[pos])]


def global_order_loader(
    source, local_batch_size: int, seed: int, worker_count: int = 0, start_step: int = 0
):
    """A checkpointable grain ``DataLoader`` iterator over ``GlobalOrderView(source, ...)``."""
    view = GlobalOrderView(source, local_batch_size, seed, start_step)
    sampler = grain.IndexSampler(
        num_records=len(view),
        shard_options=grain.NoSharding(),
        shuffle=False,
        num_epochs=1,
        seed=0,
    )
    loader = grain.DataLoader(
        data_source=view,
        sampler=sampler,
        operations=[grain.Batch(local_batch_size, drop_remainder=True)],
        worker_count=worker_count,
    )
    return iter(loader)


class ArrayDataModule:
    """Splits of in-memory arrays.

    Args:
      arrays: ``image [N, S, S, 3] uint8``, ``label [N] int`` (other numeric keys pass through).
      splits: ``{'train', 'val', 'test': np.ndarray of row indices}``.
      class_names: names in label order.
      worker_count: grain worker processes for the training iterator (0 = in-process).
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        splits: dict[str, np.ndarray],
        class_names: Sequence[str],
        worker_count: int = 0,
    ):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.splits = {k: np.asarray(v, dtype=np.int64) for k, v in splits.items()}
        self.class_names = tuple(class_names)
        self.worker_count = worker_count
        self.train_labels = self.arrays["label"][self.splits["train"]]

    def num_examples(self, split: str) -> int:
        return len(self.splits[split])

    def train_iterator(self, local_batch_size: int, seed: int, start_step: int = 0):
        source = _Records(self.arrays, self.splits["train"])
        return global_order_loader(
            source, local_batch_size, seed, self.worker_count, start_step=start_step
        )

    def eval_batches(self, split: str, local_batch_size: int):
        source = _Records(self.arrays, self.splits[split])
        mine, num_batches = eval_shard(len(source), local_batch_size)
        template = source[0]
        template = {**template, "mask": np.bool_(False), "index": np.int32(-1)}
        for b in range(num_batches):
            pos = mine[b * local_batch_size : (b + 1) * local_batch_size]
            yield _pad_batch([source[int(i)] for i in pos], template, local_batch_size)
