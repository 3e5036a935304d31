"""cervix_jax.data: SIPaKMeD as a TFDS dataset, a synthetic replica, splits and the pipeline.

Importing this package registers the TFDS builder ``sipakmed`` (configs ``full``, ``cropped``,
``masked``), so that, with no TensorFlow installed::

    tfds.builder('sipakmed/full', data_dir=D).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=RAW))
    tfds.data_source('sipakmed/full', data_dir=D)

Public API:
  CLASS_NAMES                          label order of the five classes
  VARIANTS, SPLIT_SCHEMES              names config.data.variant / split_scheme accept
  write_synthetic_sipakmed(out_dir, images_per_class, seed, *, image_size, layout, archive)
  load_sipakmed(config.data) -> (source, SipakmedMetadata)   builds the dataset if needed
  open_source(variant, data_dir), read_metadata(source)
  ArraySource(arrays)                  in-memory source with the same iterators (tests, tools)
  DataModule(source, splits, metadata) what a run reads: records, split indices, metadata
  build_data_module(config, workdir) -> DataModule   SIPaKMeD for config.data, prepared and
      split (synthetic replica in WORKDIR/tfds unless config.data.tfds_data_dir is set:
      resolved_data_config(config, workdir))
  array_data_module(arrays, splits, class_names) -> DataModule   in-memory arrays (tests)
  kfold_splits(labels, groups, num_folds, seed) -> list of K index arrays
  split_indices(labels, groups, *, scheme, fold, num_folds, seed) -> {'train','val','test'}
  train_iterator(source, indices, *, image_size, global_batch_size, seed, num_workers, ...)
      grain DataLoader iterator, checkpointable with get_state/set_state; batches are a pure
      function of (seed, step): identical for any number of workers or processes (restore a
      state with the worker count it was saved with); augmentation is not the pipeline's: it
      runs on device, inside the jitted step (augment below)
  eval_iterator(source, indices, *, image_size, global_batch_size, ...), num_eval_batches,
      steps_per_epoch
  close_iterator(iterator)             stops its worker processes, frees their shared memory
  resize_and_crop(image, size)         the host-side geometry, for tools
  model_input(image, size) -> [S, S, 3] uint8   any image (file, PIL, uint8/uint16 array, RGB,
      RGBA, grayscale) as a model trained at S sees it: to_rgb_uint8, the dataset's stored size
      (downsize_for_storage), resize_and_crop; mask_input for its cell/nucleus masks;
      read_image, find_images, image_ids, check_image_file, ImageFileSource (files as a
      pipeline source, label UNKNOWN_LABEL); ImageError names the image (images.py)
  normalize(images), augment(rng, images, augment_config)   pure JAX, inside the jitted step
  parse_dat, rasterize                 SIPaKMeD contour files and masks
  label_maps(cytoplasm, nuclei, h, w)  per-cell label maps (0 background, k = cell k)
  cell_label_fields(record, size), count_cells(record)   a record's label maps at input size
  DataError, ManualDownloadError       errors whose message is the whole explanation
"""

from cervix_jax.data import sipakmed  # noqa: F401  (registers the TFDS builder 'sipakmed')
from cervix_jax.data.annotations import AnnotationError, label_maps, parse_dat, rasterize
from cervix_jax.data.augment import IMAGENET_MEAN, IMAGENET_STD, augment, normalize
from cervix_jax.data.data_module import (
    DataModule,
    array_data_module,
    build_data_module,
    resolved_data_config,
)
from cervix_jax.data.errors import DataError, ManualDownloadError
from cervix_jax.data.images import (
    IMAGE_SUFFIXES,
    MIN_IMAGE_SIDE,
    UNKNOWN_LABEL,
    ImageError,
    ImageFileSource,
    check_image_file,
    find_images,
    image_ids,
    mask_input,
    model_input,
    read_image,
    to_rgb_uint8,
)
from cervix_jax.data.pipeline import (
    ArraySource,
    SipakmedMetadata,
    cell_label_fields,
    close_iterator,
    count_cells,
    eval_iterator,
    load_sipakmed,
    num_eval_batches,
    open_source,
    read_metadata,
    resize_and_crop,
    steps_per_epoch,
    train_iterator,
)
from cervix_jax.data.sipakmed.sipakmed_dataset_builder import (
    CLASS_NAMES,
    STORED_SHORTER_SIDE,
    VARIANTS,
    downsize_for_storage,
)
from cervix_jax.data.splits import SCHEMES as SPLIT_SCHEMES
from cervix_jax.data.splits import kfold_splits, paper_split, split_indices
from cervix_jax.data.synthetic import write_synthetic_sipakmed

__all__ = [
    "CLASS_NAMES",
    "IMAGE_SUFFIXES",
    "MIN_IMAGE_SIDE",
    "SPLIT_SCHEMES",
    "STORED_SHORTER_SIDE",
    "UNKNOWN_LABEL",
    "VARIANTS",
    "ArraySource",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AnnotationError",
    "DataError",
    "DataModule",
    "ImageError",
    "ImageFileSource",
    "ManualDownloadError",
    "SipakmedMetadata",
    "array_data_module",
    "augment",
    "build_data_module",
    "cell_label_fields",
    "check_image_file",
    "close_iterator",
    "count_cells",
    "downsize_for_storage",
    "eval_iterator",
    "find_images",
    "image_ids",
    "kfold_splits",
    "label_maps",
    "load_sipakmed",
    "mask_input",
    "model_input",
    "normalize",
    "num_eval_batches",
    "open_source",
    "paper_split",
    "parse_dat",
    "rasterize",
    "read_image",
    "read_metadata",
    "resolved_data_config",
    "resize_and_crop",
    "split_indices",
    "steps_per_epoch",
    "to_rgb_uint8",
    "train_iterator",
    "write_synthetic_sipakmed",
]
