"""Input pipeline: grain over the TFDS ArrayRecord data source, no TensorFlow.

The host decodes the stored PNG, resizes the shorter side to ``image_size`` and centre-crops
(deterministic, cheap); augmentation and normalisation happen on device (`augment.py`).

Batches are dicts of numpy arrays (per process: ``global_batch_size // process_count`` rows):
  image [B, S, S, 3] uint8, label [B] int32, mask [B] bool (False on padding), index [B] int32
  (record index in the data source), image_id [B] str (host only), and with ``with_masks=True``
  cell_mask, nucleus_mask [B, S, S] uint8 in {0, 1} (the stored union masks, resized like the
  image; all 0 for records without them) and the per-cell label maps cell_labels,
  nucleus_labels [B, S, S] int32 (0 background,
  k = cell k in the stored polygon order; `annotations.label_maps`) with num_cells [B] int32,
  rasterised from the stored polygons mapped through the image's own resize and crop.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import multiprocessing
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from cervix_jax import runtime
from cervix_jax.data import sipakmed  # noqa: F401  (registers the builder)
from cervix_jax.data.annotations import label_maps, unpack_polygons
from cervix_jax.data.errors import DataError, ManualDownloadError
from cervix_jax.data.sipakmed.sipakmed_dataset_builder import CLASS_NAMES

_ENCODED_FIELDS = ("image", "cell_mask", "nucleus_mask")


@dataclasses.dataclass(frozen=True)
class SipakmedMetadata:
    """What the split functions and reports need, one entry per record of the data source.

    Attributes:
      labels: [N] int32 class index (order of `CLASS_NAMES`).
      groups: [N] str, '<class>/<full-image stem>' (crops of one field of view share it).
      image_ids: [N] str.
      class_names: label names.
      variant: 'full' | 'cropped' | 'masked'.
      data_dir: TFDS data directory holding the prepared dataset.
    """

    labels: np.ndarray
    groups: np.ndarray
    image_ids: np.ndarray
    class_names: tuple[str, ...]
    variant: str
    data_dir: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)


def _field(config: Any, name: str, default=None):
    return (
        getattr(config, name, default)
        if not isinstance(config, dict)
        else config.get(name, default)
    )


def open_source(variant: str, data_dir: str | None = None):
    """The prepared ``sipakmed/<variant>`` train split as a random-access source.

    Image and mask fields are left as encoded PNG bytes (the pipeline decodes them).
    """
    return tfds.data_source(
        f"sipakmed/{variant}",
        split="train",
        data_dir=data_dir or None,
        decoders={name: tfds.decode.SkipDecoding() for name in _ENCODED_FIELDS},
    )


def read_metadata(source, variant: str = "", data_dir: str = "") -> SipakmedMetadata:
    """Reads labels, groups and ids of every record (one pass; images are not decoded)."""
    n = len(source)
    records = source.__getitems__(list(range(n))) if n else []
    as_str = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    return SipakmedMetadata(
        labels=np.asarray([r["label"] for r in records], np.int32),
        groups=np.asarray([as_str(r["group_id"]) for r in records], dtype=str),
        image_ids=np.asarray([as_str(r["image_id"]) for r in records], dtype=str),
        class_names=CLASS_NAMES,
        variant=variant,
        data_dir=data_dir,
    )


def _manual_dir_error(manual_dir: str) -> ManualDownloadError:
    from cervix_jax.data.sipakmed.sipakmed_dataset_builder import Builder

    return ManualDownloadError(
        f"config.data.manual_dir={manual_dir!r} does not exist or is empty, and the SIPaKMeD "
        "dataset has not been prepared yet.\n"
        + Builder.MANUAL_DOWNLOAD_INSTRUCTIONS
        + "Then pass --config.data.manual_dir=/path/to/that/folder, or train on the synthetic "
        "replica with --config.data.synthetic=True."
    )


@dataclasses.dataclass(frozen=True)
class _Location:
    """Where ``config.data``'s dataset is prepared and read from."""

    variant: str
    data_dir: str | None  # None: TFDS's default (~/tensorflow_datasets)
    manual_dir: str
    synthetic: tuple[int, int] | None  # (images per class, seed) of the synthetic replica

    @property
    def name(self) -> str:
        return f"sipakmed/{self.variant}"

    def builder(self):
        # TFDS warns 'Variant folder ... has no dataset_info.json' whenever it looks for a
        # dataset not prepared yet, i.e. before every first preparation: expected here.
        runtime.drop_log_records("Variant folder %s has no %s")
        return tfds.builder(self.name, data_dir=self.data_dir)


def _location(data_config: Any) -> _Location:
    variant = _field(data_config, "variant", "full")
    data_dir = os.path.expanduser(_field(data_config, "tfds_data_dir", "") or "") or None
    manual_dir = os.path.expanduser(_field(data_config, "manual_dir", "") or "")
    synthetic = None
    if _field(data_config, "synthetic", False):
        # The synthetic replica gets its own data dir per (size, seed), so that it never
        # shadows (or is shadowed by) a prepared real SIPaKMeD or another replica.
        synthetic = (
            int(_field(data_config, "synthetic_images_per_class", 40)),
            int(_field(data_config, "synthetic_seed", 0)),
        )
        root = data_dir or os.fspath(tfds.core.constants.DATA_DIR)
        data_dir = os.path.join(root, "sipakmed_synthetic_n{}_s{}".format(*synthetic))
        manual_dir = manual_dir or os.path.join(data_dir, "raw")
    return _Location(variant, data_dir, manual_dir, synthetic)


def dataset_location(data_config: Any) -> tuple[str, str]:
    """``(name, data dir)`` of the dataset ``config.data`` reads, e.g. ``('sipakmed/full',
    '/home/u/tensorflow_datasets')``: for messages."""
    location = _location(data_config)
    return location.name, location.data_dir or os.fspath(tfds.core.constants.DATA_DIR)


def is_prepared(data_config: Any) -> bool:
    """Whether the dataset of ``config.data`` is prepared (TFDS renames it into place only when
    complete, so another process may poll this while one prepares it). Writes nothing."""
    return _location(data_config).builder().is_prepared()


def _check_writable(location: _Location) -> None:
    """Raises `DataError` naming ``config.data.tfds_data_dir`` if the dataset cannot be
    prepared there (a read-only or foreign folder), before anything is written."""
    target = location.data_dir or os.fspath(tfds.core.constants.DATA_DIR)
    existing = os.path.abspath(target)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    field = "config.data.tfds_data_dir" + ("" if location.data_dir else " (default)")
    problem = None if os.path.isdir(existing) else f"{existing} is a file"
    if problem is None:
        try:  # os.access cannot tell: root passes it on read-only file systems
            os.rmdir(tempfile.mkdtemp(prefix=".cervix_jax_write_test-", dir=existing))
        except OSError as e:
            problem = f"cannot write in {existing} ({e.strerror})"
    if problem:
        raise DataError(
            f"{field}={target!r}: {location.name} is not prepared there and {problem}; give a "
            "writable --config.data.tfds_data_dir (or prepare the dataset once where it can be "
            "written)."
        )


def load_sipakmed(data_config: Any):
    """Prepares ``sipakmed/<variant>`` if needed and opens it.

    Args:
      data_config: ``config.data`` (fields ``variant``, ``manual_dir``, ``tfds_data_dir``,
        ``synthetic``, ``synthetic_images_per_class``, ``synthetic_seed``).
        With ``synthetic=True`` the synthetic replica is written into ``manual_dir`` (default
        ``<data dir>/raw``) unless already there, and prepared in its own data dir
        ``<tfds_data_dir>/sipakmed_synthetic_n<N>_s<seed>``.

    Returns:
      (source, metadata): the random-access source (see `open_source`) and `SipakmedMetadata`.

    Raises:
      ManualDownloadError: when the dataset is not prepared and ``manual_dir`` is missing or
        empty; the message holds the download instructions and the option to set.
      DataError: the dataset is not prepared and its data dir cannot be written.
    """
    from cervix_jax.data import synthetic as synthetic_lib

    location = _location(data_config)
    builder = location.builder()
    if not builder.is_prepared():
        _check_writable(location)
        manual_dir = location.manual_dir
        if location.synthetic and not synthetic_lib.is_complete(manual_dir):
            synthetic_lib.write_synthetic_sipakmed(manual_dir, *location.synthetic)
        if not manual_dir or not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
            raise _manual_dir_error(manual_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    resolved_dir = os.fspath(builder._data_dir_root)
    source = open_source(location.variant, resolved_dir)
    return source, read_metadata(source, location.variant, resolved_dir)


def close_iterator(iterator: Any) -> None:
    """Stops the worker processes of a `train_iterator` (or `eval_iterator`) and frees the
    shared memory of the batches they prefetched. Grain leaves that to garbage collection,
    which at interpreter exit may never come: Python then warns about leaked shared_memory
    objects. Idempotent; anything without a ``close`` is left alone."""
    # grain's DataLoaderIterator has no close() of its own; the dataset iterator it wraps has.
    inner = getattr(iterator, "_iterator", iterator)
    close = getattr(inner, "close", None)
    if not callable(close):
        return
    close()
    _wait_for_shared_memory_release()


def _wait_for_shared_memory_release() -> None:
    """Batches grain had taken from its workers are freed by one background thread, and a
    process that exits right after (Ctrl-C) would drop what is still queued there: Python then
    reports leaked shared_memory objects. The thread takes requests in order, so a no-op sent
    through it returns once they are done. (grain 0.2 internals; another grain: no wait.)"""
    try:
        from grain._src.python.ipc import shared_memory_array
    except ImportError:
        return
    pool = getattr(shared_memory_array.SharedMemoryArray, "_del_thread_pool", None)
    if pool is None:
        return
    gc.collect()  # arrays held only by reference cycles of the closed pipeline
    try:
        pool.apply(int)
    except ValueError:  # the pool has already been shut down (interpreter exit)
        pass


def _ignore_signals_in_worker() -> None:
    """In a grain worker process: leave SIGINT and SIGTERM to the main process. A terminal's
    Ctrl-C and a scheduler's SIGTERM reach the whole process group; the main process decides
    how the run stops (cervix_jax.train.interrupts) and stops its workers, which otherwise
    print a traceback each."""
    if (
        multiprocessing.parent_process() is not None
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------------
# Host-side transforms (picklable: grain workers receive them by pickling).


class _IndexedView:
    """Random access to chosen records of ``source``; padding entries (-1) give None."""

    def __init__(self, source, indices: np.ndarray):
        self._source = source
        self._indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i):
        index = int(self._indices[i])
        return (index, None if index < 0 else self._source[index])

    def __repr__(self) -> str:
        return f"_IndexedView({self._source!r}, {len(self)} records)"


class ArraySource:
    """A random-access source over in-memory arrays, one record per row (tests, experiments).

    ``ArraySource({'image': [N, H, W, 3] uint8, 'label': [N] int, ...})[i]`` is the dict of
    row ``i`` of every array; `train_iterator` and `eval_iterator` read it exactly like the
    TFDS source (images that are already ``S x S`` are not resampled). Optional keys:
    ``image_id`` ([N] str; default the row number), ``cell_mask``/``nucleus_mask``
    ([N, H, W] uint8, for ``with_masks=True``) and ``cell_labels``/``nucleus_labels``
    ([N, H, W] int, per-cell label maps as `annotations.label_maps` makes them).
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: len(v) for k, v in self._arrays.items()}
        if "image" not in lengths or "label" not in lengths or len(set(lengths.values())) != 1:
            raise DataError(
                f"ArraySource needs 'image' and 'label' arrays of one length; got lengths "
                f"{lengths}."
            )
        self._len = lengths["label"]

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict:
        return {k: v[int(i)] for k, v in self._arrays.items()}

    def __repr__(self) -> str:  # short: grain and error messages print it
        return f"ArraySource(keys={sorted(self._arrays)}, n={self._len})"


def _decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _square_box(width: int, height: int) -> tuple[float, float, float, float]:
    side = min(width, height)
    left, top = (width - side) / 2.0, (height - side) / 2.0
    return (left, top, left + side, top + side)


def resize_and_crop(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resizes the shorter side to ``size`` and centre-crops to ``size`` x ``size``.

    Args:
      image: [H, W] or [H, W, C] uint8.
      size: output side S.
      nearest: nearest-neighbour (for masks) instead of antialiased bilinear.

    Returns:
      [S, S] or [S, S, C] uint8.
    """
    squeeze = image.ndim == 3 and image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(_resize_pil(pil, size, nearest))
    return out[..., None] if squeeze else out


def _resize_pil(image: Image.Image, size: int, nearest: bool) -> Image.Image:
    # One resample from the centre square of the source: equal to resize-then-crop up to
    # sub-pixel alignment, and never materialises the larger intermediate image.
    box = _square_box(*image.size)
    return image.resize((size, size), Image.NEAREST if nearest else Image.BILINEAR, box=box)


@dataclasses.dataclass(frozen=True)
class _DecodeCrop(grain.transforms.Map):
    image_size: int
    with_masks: bool

    def map(self, element):
        index, record = element
        size = self.image_size
        if record is None:  # padding of the last evaluation batch
            out = {
                "image": np.zeros((size, size, 3), np.uint8),
                "label": np.int32(0),
                "mask": np.bool_(False),
                "index": np.int32(-1),
                "image_id": np.asarray(""),
            }
            if self.with_masks:
                out["cell_mask"] = np.zeros((size, size), np.uint8)
                out["nucleus_mask"] = np.zeros((size, size), np.uint8)
                out.update(_no_cells(size))
            return out
        image_id = record.get("image_id", str(index))
        out = {
            "image": _image_field(record["image"], size, nearest=False),
            "label": np.int32(record["label"]),
            "mask": np.bool_(True),
            "index": np.int32(index),
            "image_id": np.asarray(image_id.decode() if isinstance(image_id, bytes) else image_id),
        }
        if self.with_masks:
            for name in ("cell_mask", "nucleus_mask"):
                # A record without outlines (an image file) has empty masks: no localization.
                mask = record.get(name)
                out[name] = (
                    np.zeros((size, size), np.uint8)
                    if mask is None
                    else _image_field(mask, size, nearest=True)
                )
            out.update(cell_label_fields(record, size))
        return out


def _no_cells(size: int) -> dict:
    zeros = np.zeros((size, size), np.int32)
    return {"cell_labels": zeros, "nucleus_labels": zeros, "num_cells": np.int32(0)}


def count_cells(record: dict) -> int:
    """Cells of a record: its cytoplasm polygons, or the largest label of a ``cell_labels``
    array (an `ArraySource`); 0 without either."""
    if "cytoplasm_lengths" in record:
        return int(len(record["cytoplasm_lengths"]))
    if "cell_labels" in record:
        return int(np.max(record["cell_labels"], initial=0))
    return 0


def _stored_size(value) -> tuple[int, int]:
    """(width, height) of a record's image: a PNG's header, or an array's shape."""
    if isinstance(value, bytes | np.bytes_):
        with Image.open(io.BytesIO(value)) as image:  # reads the header only
            return image.size
    return int(np.shape(value)[1]), int(np.shape(value)[0])


def cell_label_fields(record: dict, size: int) -> dict:
    """``cell_labels``, ``nucleus_labels`` [S, S] int32 and ``num_cells`` of one record.

    From the stored polygons, mapped through the image's resize-and-centre-crop (the same
    square box `resize_and_crop` resamples) and rasterised at S x S; or, for an `ArraySource`
    record with ``cell_labels``/``nucleus_labels`` arrays, those arrays resized by nearest
    neighbour; all zeros (no cells) when the record has neither.
    """
    if "cytoplasm_vertices" in record:
        width, height = _stored_size(record["image"])
        left, top, right, _ = _square_box(width, height)
        scale = size / (right - left)
        polygons = {}
        for part in ("cytoplasm", "nucleus"):
            stored = unpack_polygons(record[f"{part}_vertices"], record[f"{part}_lengths"])
            polygons[part] = [(np.asarray(p) - (left, top)) * scale for p in stored]
        cells, nuclei = label_maps(polygons["cytoplasm"], polygons["nucleus"], size, size)
        count = np.int32(count_cells(record))
        return {"cell_labels": cells, "nucleus_labels": nuclei, "num_cells": count}
    if "cell_labels" in record:
        maps = {k: _label_field(record[k], size) for k in ("cell_labels", "nucleus_labels")}
        return {**maps, "num_cells": np.int32(count_cells(record))}
    return _no_cells(size)


def _label_field(value, size: int) -> np.ndarray:
    """An int label map, resized and centre-cropped by nearest neighbour."""
    array = np.asarray(value, np.int32)
    if array.shape[:2] == (size, size):
        return array
    return np.asarray(_resize_pil(Image.fromarray(array), size, nearest=True), np.int32)


def _image_field(value, size: int, nearest: bool) -> np.ndarray:
    """An encoded PNG (TFDS source) or a uint8 array (`ArraySource`), resized and cropped.

    Images become RGB ``[S, S, 3]``, masks ``[S, S]``; an array already ``S x S`` is kept as is
    (no resampling).
    """
    if isinstance(value, bytes | np.bytes_):
        image = _decode_png(value)
        if not nearest:
            image = image.convert("RGB")
        return np.asarray(_resize_pil(image, size, nearest), np.uint8)
    array = np.asarray(value, np.uint8)
    if array.shape[:2] == (size, size):
        return array
    return resize_and_crop(array, size, nearest=nearest)


def _batch_fn(examples: Sequence[dict]) -> dict:
    # np.stack handles the str leaves (numpy '<U' arrays) as well as the numeric ones.
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _ensure_flags_parsed() -> None:
    # grain's worker processes read absl flags; outside an absl app (tests, notebooks, bench)
    # nothing has parsed them, and grain would raise UnparsedFlagAccessError. Defaults are fine.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _process_layout(global_batch_size, process_index, process_count):
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % process_count:
        raise DataError(
            f"global batch size {global_batch_size} is not divisible by the number of processes "
            f"{process_count}; choose a batch size that is a multiple of it."
        )
    return process_index, process_count, global_batch_size // process_count


class _TrainBatches:
    """Element k is this process's part of global training batch ``start_step + k``, decoded.

    Epoch e visits the split in the order ``permutation(seed, e)``; global batch b of an epoch
    is positions [b*G, (b+1)*G) of that order, and process p takes rows [p*L, (p+1)*L) of it
    (L = G / process_count); the last N mod G examples of an epoch are dropped. Element k is a
    pure function of k, so the batches are the same for any number of grain workers and any
    number of processes, and grain's iterator state (the last k) is the data position.
    """

    def __init__(
        self,
        source,
        indices,
        decode,
        global_batch_size,
        seed,
        process_index,
        process_count,
        num_epochs,
        start_step=0,
    ):
        self._source = source
        self._indices = np.asarray(indices, np.int64)
        self._decode = decode
        self._global = int(global_batch_size)
        self._local = self._global // process_count
        self._process_index = process_index
        self._seed = int(seed)
        self.steps_per_epoch = len(self._indices) // self._global
        if self.steps_per_epoch == 0:
            raise DataError(
                f"the training split has {len(self._indices)} examples, fewer than one global "
                f"batch ({self._global}); lower config.batch_size or use more data."
            )
        self._num_epochs = num_epochs
        self._start = int(start_step)
        self._cached_epoch, self._cached_order = -1, None

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch * self._num_epochs - self._start)

    def __setstate__(self, state: dict) -> None:
        # Unpickled in each grain worker process as it starts (in its main thread): the one
        # place where our code runs there before any batch.
        self.__dict__.update(state)
        _ignore_signals_in_worker()

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._cached_epoch:
            rng = np.random.default_rng([self._seed, epoch])
            self._cached_order = self._indices[rng.permutation(len(self._indices))]
            self._cached_epoch = epoch
        return self._cached_order

    def __getitem__(self, k: int) -> dict:
        k = int(k) + self._start
        epoch, b = divmod(k, self.steps_per_epoch)
        start = b * self._global + self._process_index * self._local
        rows = self._order(epoch)[start : start + self._local]
        return _batch_fn([self._decode.map((int(i), self._source[int(i)])) for i in rows])

    def __repr__(self) -> str:
        return (
            f"_TrainBatches({len(self._indices)} examples, global batch {self._global}, "
            f"seed {self._seed}, process {self._process_index}, start step {self._start})"
        )


def train_iterator(
    source,
    indices: np.ndarray,
    *,
    image_size: int,
    global_batch_size: int,
    seed: int,
    num_workers: int = 0,
    prefetch_buffer_size: int = 2,
    with_masks: bool = False,
    num_epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    start_step: int = 0,
) -> grain.DataLoaderIterator:
    """Shuffled training batches over ``indices`` (record indices of ``source``).

    Each epoch is a fresh permutation derived from ``seed``; the incomplete last batch of an
    epoch is dropped. Every process reads only its own rows of each global batch
    (``jax.process_index()`` of ``jax.process_count()`` unless given), yielding
    ``global_batch_size // process_count`` examples per batch; the global batches do not depend
    on the number of processes or of grain workers. The returned grain ``DataLoader`` iterator is
    checkpointable: ``get_state()`` -> bytes, ``set_state(state)`` continues at the same example.

    Args:
      source: from `open_source` / `load_sipakmed`.
      indices: [N] int record indices of the training split.
      image_size: S.
      global_batch_size: batch over all processes.
      seed: shuffling seed.
      num_workers: grain worker processes (0 = decode in the main process). Resume with the
        same value (grain stores it in the state).
      prefetch_buffer_size: batches buffered per worker.
      with_masks: also yield cell_mask / nucleus_mask.
      num_epochs: None repeats (practically) forever.
      process_index, process_count: override JAX's (tests, custom launchers).
      start_step: the first global batch to yield (0 = the beginning): positions a new
        iterator at any step without reading what comes before, e.g. when a run resumes on a
        different number of processes, where the saved grain states do not fit. It is part of
        the iterator's identity: a state saved by it restores only into an iterator made with
        the same ``start_step``.
    """
    process_index, process_count, _ = _process_layout(
        global_batch_size, process_index, process_count
    )
    if num_workers > 0:
        _ensure_flags_parsed()
    batches = _TrainBatches(
        source,
        indices,
        _DecodeCrop(image_size, with_masks),
        global_batch_size,
        seed,
        process_index,
        process_count,
        num_epochs=1_000_000 if num_epochs is None else num_epochs,
        start_step=start_step,
    )
    # Each element is already a whole batch, so grain's sampler just walks 0, 1, 2, ... and
    # workers (which take elements round-robin) cannot change the order.
    sampler = grain.samplers.IndexSampler(
        num_records=len(batches),
        shard_options=grain.sharding.NoSharding(),
        shuffle=False,
        num_epochs=1,
        seed=0,
    )
    loader = grain.DataLoader(
        data_source=batches,
        sampler=sampler,
        worker_count=int(num_workers),
        worker_buffer_size=max(1, int(prefetch_buffer_size)),
        read_options=grain.ReadOptions(num_threads=1, prefetch_buffer_size=1),
    )
    return iter(loader)


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Training batches per epoch (incomplete last batch dropped)."""
    return num_examples // global_batch_size


def _eval_shard(indices, global_batch_size, process_index, process_count) -> np.ndarray:
    """This process's indices, padded with -1 so every process has the same number of full
    batches. Process p gets examples p, p + P, p + 2P, ... (each exactly once overall)."""
    process_index, process_count, per_process = _process_layout(
        global_batch_size, process_index, process_count
    )
    indices = np.asarray(indices, np.int64)
    num_batches = max(1, -(-len(indices) // global_batch_size))
    padded = np.full(num_batches * global_batch_size, -1, np.int64)
    padded[: len(indices)] = indices
    return padded[process_index::process_count][: num_batches * per_process]


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
    """Batches `eval_iterator` yields (the same on every process)."""
    return max(1, -(-num_examples // global_batch_size))


def eval_iterator(
    source,
    indices: np.ndarray,
    *,
    image_size: int,
    global_batch_size: int,
    num_workers: int = 0,
    prefetch_buffer_size: int = 2,
    with_masks: bool = False,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict]:
    """Deterministic evaluation batches: every index exactly once across processes, in order.

    The last batch is padded (``mask`` False, ``index`` -1, zero image) so that all batches have
    ``global_batch_size // process_count`` rows and all processes yield `num_eval_batches`.
    """
    process_index, process_count, per_process = _process_layout(
        global_batch_size, process_index, process_count
    )
    shard = _eval_shard(indices, global_batch_size, process_index, process_count)
    dataset = (
        grain.MapDataset.source(_IndexedView(source, shard))
        .map(_DecodeCrop(image_size, with_masks))
        .batch(per_process, drop_remainder=False, batch_fn=_batch_fn)
    )
    # Threads, not processes: evaluation is short, order must be exact, and PIL releases the GIL
    # while decoding; worker processes would cost more to start than they save.
    iterable = dataset.to_iter_dataset(
        grain.ReadOptions(
            num_threads=max(1, int(num_workers)), prefetch_buffer_size=int(prefetch_buffer_size)
        )
    )
    return iter(iterable)
