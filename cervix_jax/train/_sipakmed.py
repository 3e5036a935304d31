"""SIPaKMeD (real or synthetic) as a ``DataModule``, on top of ``cervix_jax.data``.

The training iterator is built here rather than with ``cervix_jax.data.train_iterator`` for one
reason: multi-host equivalence. ``GlobalOrderView`` gives every process its rows of the same
global batches as a single-process run would see, so the data order (and with it the whole run)
does not depend on the number of processes. Decoding uses the data wing's public
``resize_and_crop``; evaluation uses its ``eval_iterator`` unchanged.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import grain.python as grain
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from PIL import Image

from cervix_jax import data as data_lib
from cervix_jax.train.data_module import GlobalOrderView


class _Decoded:
    """Random access to decoded, resized records of the TFDS source (picklable for grain)."""

    def __init__(self, source, indices: np.ndarray, image_size: int):
        self._source = source
        self._indices = np.asarray(indices, np.int64)
        self._size = image_size

    def __len__(self) -> int:
        return len(self._indices)

    def __repr__(self) -> str:
        return f"_Decoded({self._source!r}, n={len(self._indices)}, image_size={self._size})"

    def __getitem__(self, i: int) -> dict:
        index = int(self._indices[i])
        record = self._source[index]
        image = Image.open(io.BytesIO(record["image"])).convert("RGB")
        image = data_lib.resize_and_crop(np.asarray(image), self._size)
        return {
            "image": np.asarray(image, np.uint8),
            "label": np.int32(record["label"]),
            "mask": np.bool_(True),
            "index": np.int32(index),
        }


def resolved_data_config(config: ml_collections.ConfigDict, workdir) -> ml_collections.ConfigDict:
    """``config.data`` with the synthetic replica's directories placed in the workdir (unless
    the user gave them)."""
    dc = ml_collections.ConfigDict(config.data.to_dict())
    if dc.synthetic and not dc.tfds_data_dir:
        dc.tfds_data_dir = os.fspath(Path(workdir).absolute() / "tfds")
    return dc


def _load(dc: ml_collections.ConfigDict):
    from cervix_jax.train.loop import TrainingError

    try:
        return data_lib.load_sipakmed(dc)
    except ValueError as e:
        # The data wing reports a missing dataset as a ValueError about manual_dir; its message
        # is complete (download instructions and the option), so it reaches the user as is.
        if "manual_dir" in str(e):
            raise TrainingError(str(e)) from None
        raise


class SipakmedDataModule:
    """Splits of ``sipakmed/<variant>`` from ``config.data``; see ``data_module.DataModule``."""

    def __init__(self, config: ml_collections.ConfigDict, workdir):
        dc = resolved_data_config(config, workdir)
        # Process 0 prepares the dataset (generating the synthetic replica if asked); the others
        # wait, then open what it wrote (same filesystem assumed, as for checkpoints).
        if jax.process_index() == 0:
            self.source, self.metadata = _load(dc)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("cervix_jax: dataset prepared")
        if jax.process_index() != 0:
            self.source, self.metadata = _load(dc)
        self.config = dc
        self.class_names = tuple(self.metadata.class_names)
        self.splits = data_lib.split_indices(
            self.metadata.labels,
            self.metadata.groups,
            scheme=dc.split_scheme,
            fold=int(dc.fold),
            num_folds=int(dc.num_folds),
            seed=int(dc.split_seed),
        )
        self.train_labels = self.metadata.labels[self.splits["train"]]

    def num_examples(self, split: str) -> int:
        return len(self.splits[split])

    def image_ids(self, split: str, index: np.ndarray) -> np.ndarray:
        del split
        return self.metadata.image_ids[np.asarray(index, np.int64)]

    def train_iterator(self, local_batch_size: int, seed: int, start_step: int = 0):
        dc = self.config
        source = _Decoded(self.source, self.splits["train"], int(dc.image_size))
        view = GlobalOrderView(source, local_batch_size, seed, start_step)
        if dc.num_workers > 0:
            from absl import flags

            # grain workers read absl flags; outside an absl app nothing parsed them.
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()
        loader = grain.DataLoader(
            data_source=view,
            sampler=grain.IndexSampler(
                num_records=len(view),
                shard_options=grain.NoSharding(),
                shuffle=False,
                num_epochs=1,
                seed=0,
            ),
            operations=[grain.Batch(local_batch_size, drop_remainder=True)],
            worker_count=int(dc.num_workers),
            worker_buffer_size=max(1, int(dc.prefetch_buffer_size)),
        )
        return iter(loader)

    def eval_batches(self, split: str, local_batch_size: int):
        dc = self.config
        return data_lib.eval_iterator(
            self.source,
            self.splits[split],
            image_size=int(dc.image_size),
            global_batch_size=local_batch_size * jax.process_count(),
            num_workers=int(dc.num_workers),
            prefetch_buffer_size=int(dc.prefetch_buffer_size),
        )
