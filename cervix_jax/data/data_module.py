"""The data a training run needs: a random-access source, its splits and per-record metadata.

A `DataModule` gathers what the iterators of `pipeline.py` (``train_iterator``,
``eval_iterator``) read for one run. ``build_data_module`` prepares SIPaKMeD (real, or the
synthetic replica in the workdir) for ``config.data`` and splits it; ``array_data_module`` wraps
in-memory arrays (tests, experiments) so that they go through the very same iterators.
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
from jax.experimental import multihost_utils

from cervix_jax.data.pipeline import ArraySource, SipakmedMetadata, load_sipakmed
from cervix_jax.data.splits import split_indices


@dataclasses.dataclass(frozen=True)
class DataModule:
    """What ``cervix_jax.train`` (training, evaluation) and the explain tool read.

    Attributes:
      source: random-access records (``len``, ``[i]`` -> example dict): the TFDS source of
        `load_sipakmed` or an `ArraySource`.
      splits: ``{'train', 'val', 'test': [N_split] int}`` record indices of ``source``.
      metadata: `SipakmedMetadata` (``labels``, ``image_ids``, ``class_names``, ...), one entry
        per record.
    """

    source: Any
    splits: dict[str, np.ndarray]
    metadata: SipakmedMetadata

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
    metadata = SipakmedMetadata(
        labels=labels,
        groups=image_ids,
        image_ids=image_ids,
        class_names=tuple(class_names),
        variant="arrays",
        data_dir="",
    )
    splits = {k: np.asarray(v, np.int64) for k, v in splits.items()}
    return DataModule(source=source, splits=splits, metadata=metadata)


def resolved_data_config(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> ml_collections.ConfigDict:
    """``config.data`` with the synthetic replica placed in ``WORKDIR/tfds`` (unless the user
    gave ``tfds_data_dir``)."""
    data_config = ml_collections.ConfigDict(config.data.to_dict())
    if data_config.synthetic and not data_config.tfds_data_dir:
        data_config.tfds_data_dir = os.fspath(Path(workdir).absolute() / "tfds")
    return data_config


def build_data_module(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> DataModule:
    """SIPaKMeD for ``config.data`` (prepared if needed) and its splits.

    Process 0 prepares the dataset (generating the synthetic replica if asked) while the others
    wait, then they open what it wrote (a shared filesystem is assumed, as for checkpoints).

    Raises:
      ManualDownloadError: the dataset is not prepared and ``config.data.manual_dir`` does not
        hold it (the message says what to do).
    """
    data_config = resolved_data_config(config, workdir)
    if jax.process_index() == 0:
        source, metadata = load_sipakmed(data_config)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("cervix_jax: dataset prepared")
    if jax.process_index() != 0:
        source, metadata = load_sipakmed(data_config)
    splits = split_indices(
        metadata.labels,
        metadata.groups,
        scheme=data_config.split_scheme,
        fold=int(data_config.fold),
        num_folds=int(data_config.num_folds),
        seed=int(data_config.split_seed),
    )
    return DataModule(source=source, splits=splits, metadata=metadata)
