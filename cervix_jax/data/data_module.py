"""The data a training run needs: a random-access source, its splits and per-record metadata.

A `DataModule` gathers what the iterators of `pipeline.py` (``train_iterator``,
``eval_iterator``) read for one run. ``build_data_module`` prepares SIPaKMeD (real, or the
synthetic replica in the workdir) for ``config.data`` and splits it; ``array_data_module`` wraps
in-memory arrays (tests, experiments) so that they go through the very same iterators.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from cervix_jax.data.errors import DataError
from cervix_jax.data.pipeline import (
    ArraySource,
    SipakmedMetadata,
    dataset_location,
    is_prepared,
    load_sipakmed,
)
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


# How long other processes wait for process 0 to prepare the dataset: the real SIPaKMeD takes
# minutes (reading five 7-Zip archives, ~5 GB); a slow shared disk, much longer.
PREPARE_TIMEOUT_S = 6 * 3600


def wait_until_prepared(
    data_config: ml_collections.ConfigDict,
    *,
    timeout_s: float = PREPARE_TIMEOUT_S,
    poll_s: float = 2.0,
    report_every_s: float = 60.0,
) -> None:
    """Blocks until the dataset of ``data_config`` is prepared (by process 0, on a file system
    every process sees), printing what it waits for now and then.

    No collective is involved: a collective's deadline (Gloo gives up after 30 s) is far
    shorter than a preparation, and nothing else is asked of the other processes meanwhile.

    Raises:
      DataError: not prepared after ``timeout_s``.
    """
    name, data_dir = dataset_location(data_config)
    start, last_report = time.monotonic(), None
    while not is_prepared(data_config):
        waited = time.monotonic() - start
        if waited > timeout_s:
            raise DataError(
                f"process {jax.process_index()}: {name} is still not prepared in {data_dir} "
                f"after {waited / 60:.0f} min; process 0 prepares it there, on a file system "
                "every process must see."
            )
        if last_report is None or time.monotonic() - last_report >= report_every_s:
            print(
                f"process {jax.process_index()}: waiting for process 0 to prepare {name} in "
                f"{data_dir} ({waited / 60:.0f} min so far)",
                flush=True,
            )
            last_report = time.monotonic()
        time.sleep(poll_s)


def build_data_module(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> DataModule:
    """SIPaKMeD for ``config.data`` (prepared if needed) and its splits.

    Process 0 prepares the dataset (generating the synthetic replica if asked) while the others
    wait for it on the file system (`wait_until_prepared`: no collective, so no deadline but
    ``PREPARE_TIMEOUT_S``), then they open what it wrote (a shared filesystem is assumed, as
    for checkpoints).

    Raises:
      ManualDownloadError: the dataset is not prepared and ``config.data.manual_dir`` does not
        hold it (the message says what to do).
    """
    data_config = resolved_data_config(config, workdir)
    if jax.process_index() != 0:
        wait_until_prepared(data_config)
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
