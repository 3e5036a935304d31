"""The data a training run needs: a random-access source, its splits and per-record metadata.

The input pipeline itself is the data wing's (`cervix_jax.data.train_iterator` and
`eval_iterator`); this module only gathers what the loop hands to it. ``build_data_module``
prepares SIPaKMeD (real, or the synthetic replica in the workdir) for ``config.data``;
``array_data_module`` wraps in-memory arrays (tests, experiments) so that they go through the
very same iterators.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from cervix_jax import data as data_lib
from cervix_jax.data.pipeline import ArraySource


@dataclasses.dataclass(frozen=True)
class DataModule:
    """What ``train_and_evaluate``/``evaluate`` read.

    Attributes:
      source: random-access records (``len``, ``[i]`` -> example dict): the TFDS source of
        `cervix_jax.data.load_sipakmed` or an `ArraySource`.
      splits: ``{'train', 'val', 'test': [N_split] int}`` record indices of ``source``.
      metadata: `cervix_jax.data.SipakmedMetadata` (``labels``, ``image_ids``,
        ``class_names``, ...), one entry per record.
    """

    source: Any
    splits: dict[str, np.ndarray]
    metadata: data_lib.SipakmedMetadata

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.metadata.class_names)

    def num_examples(self, split: str) -> int:
        return len(self.splits[split])

    @property
    def train_labels(self) -> np.ndarray:
        """``[N_train]`` labels of the training split (class-balanced loss)."""
        return self.metadata.labels[self.splits["train"]]


def array_data_module(
    arrays: dict[str, np.ndarray],
    splits: dict[str, np.ndarray],
    class_names: Sequence[str],
) -> DataModule:
    """In-memory data: ``image [N, S, S, 3] uint8``, ``label [N] int`` (optional ``image_id``
    ``[N] str``), split into ``{'train', 'val', 'test': row indices}``."""
    source = ArraySource(arrays)
    labels = np.asarray(arrays["label"], np.int32)
    image_ids = np.asarray(arrays.get("image_id", np.arange(len(labels)).astype(str)), dtype=str)
    metadata = data_lib.SipakmedMetadata(
        labels=labels,
        groups=image_ids,
        image_ids=image_ids,
        class_names=tuple(class_names),
        variant="arrays",
        data_dir="",
    )
    splits = {k: np.asarray(v, np.int64) for k, v in splits.items()}
    return DataModule(source=source, splits=splits, metadata=metadata)


def resolved_data_config(config: ml_collections.ConfigDict, workdir) -> ml_collections.ConfigDict:
    """``config.data`` with the synthetic replica placed in ``WORKDIR/tfds`` (unless the user
    gave ``tfds_data_dir``)."""
    dc = ml_collections.ConfigDict(config.data.to_dict())
    if dc.synthetic and not dc.tfds_data_dir:
        dc.tfds_data_dir = os.fspath(Path(workdir).absolute() / "tfds")
    return dc


def build_data_module(config: ml_collections.ConfigDict, workdir) -> DataModule:
    """SIPaKMeD for ``config.data`` (prepared if needed) and its splits.

    Process 0 prepares the dataset (generating the synthetic replica if asked) while the others
    wait, then they open what it wrote (a shared filesystem is assumed, as for checkpoints).

    Raises:
      cervix_jax.data.ManualDownloadError: the dataset is not prepared and
        ``config.data.manual_dir`` does not hold it (the message says what to do).
    """
    dc = resolved_data_config(config, workdir)
    if jax.process_index() == 0:
        source, metadata = data_lib.load_sipakmed(dc)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("cervix_jax: dataset prepared")
    if jax.process_index() != 0:
        source, metadata = data_lib.load_sipakmed(dc)
    splits = data_lib.split_indices(
        metadata.labels,
        metadata.groups,
        scheme=dc.split_scheme,
        fold=int(dc.fold),
        num_folds=int(dc.num_folds),
        seed=int(dc.split_seed),
    )
    return DataModule(source=source, splits=splits, metadata=metadata)
