"""Default configuration: the paper's protocol (224x224, Adam 1e-3, batch 16, 50 epochs).

Per-model files (`resnet50.py`, `densenet121.py`, `rca.py`, `attention92.py`) start from
`get_config()` here and change the model. Every knob a researcher turns lives in this file.

Config strings (``configs/rca.py:cropped,demo``) are parsed by :func:`apply_config_string`:
``full`` (default), ``cropped`` or ``masked`` pick the SIPaKMeD variant; ``demo`` trains on the
synthetic SIPaKMeD generated into the workdir, at a reduced resolution, for a few epochs.
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("full", "cropped", "masked")
MODIFIERS = ("demo",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the default (paper) configuration, modified by the config string ``arg``."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "resnet50"
    config.model.dropout_rate = 0.5
    config.model.dtype = "float32"  # compute dtype; parameters stay float32
    # Architecture options passed to cervix_jax.models.create_model (model files add fields,
    # e.g. rca.py's ca_placement); empty for the plain models.
    config.model.options = ml_collections.ConfigDict()

    config.data = ml_collections.ConfigDict()
    config.data.variant = "full"  # full | cropped | masked
    config.data.image_size = 224
    config.data.manual_dir = ""  # folder with the five SIPaKMeD class archives (zipped or not)
    config.data.tfds_data_dir = ""  # where TFDS writes the prepared dataset; '' = TFDS default
    config.data.synthetic = False  # generate the synthetic SIPaKMeD into manual_dir first
    config.data.synthetic_images_per_class = 40
    config.data.synthetic_seed = 0  # seed of the synthetic replica (same seed, same bytes)
    config.data.split_scheme = "kfold"  # kfold | paper
    config.data.num_folds = 5
    config.data.fold = 0  # test fold; validation fold is fold + 1 (mod num_folds)
    config.data.split_seed = 0
    config.data.num_workers = 2
    config.data.prefetch_buffer_size = 2
    config.data.augment = ml_collections.ConfigDict()
    config.data.augment.rotation_degrees = 25.0
    config.data.augment.horizontal_flip = True
    config.data.augment.vertical_flip = True

    config.batch_size = 16  # global batch, split over all devices of all processes
    config.eval_batch_size = 32
    config.num_epochs = 50

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"  # adam (paper) | adamw | sgd
    config.optim.lr = 1e-3
    config.optim.schedule = "constant"  # constant | cosine
    config.optim.warmup_epochs = 0.0
    config.optim.weight_decay = 0.0  # adam/sgd: L2 term; adamw: decoupled
    config.optim.momentum = 0.9  # sgd only
    config.optim.grad_clip_norm = 0.0  # 0 = off
    config.label_smoothing = 0.0
    config.class_balanced_loss = False  # weight the loss by N / (K * n_class)

    config.init_from = ""  # converted torchvision checkpoint dir, or another run's workdir
    config.log_every_steps = 10
    config.checkpoint_keep_latest = 1
    config.checkpoint_keep_best = 1
    return apply_config_string(config, arg)


def apply_config_string(
    config: ml_collections.ConfigDict, arg: str | None
) -> ml_collections.ConfigDict:
    """Applies ``'variant[,demo]'`` (comma-separated, any order) to ``config``."""
    tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
    unknown = [t for t in tokens if t not in VARIANTS + MODIFIERS]
    if unknown:
        raise ValueError(
            f"unknown config string item(s) {unknown}: expected one of {VARIANTS} and "
            f"optionally {MODIFIERS}, e.g. configs/rca.py:cropped,demo"
        )
    variants = [t for t in tokens if t in VARIANTS]
    if len(variants) > 1:
        raise ValueError(f"config string names several variants {variants}; pick one.")
    if variants:
        config.data.variant = variants[0]
    if "demo" in tokens:
        _demo(config)
    return config


def _demo(config: ml_collections.ConfigDict) -> None:
    """Synthetic SIPaKMeD in the workdir, 64x64 images, 12 epochs: minutes on 2 CPU cores.

    Tuned so densenet121_rca learns the synthetic classes from scratch (no ImageNet weights)
    within the budget: batch 8 (twice the updates per epoch), dropout 0.2, short warm-up and
    cosine decay. The paper's protocol is the default, not this.
    """
    config.data.synthetic = True
    # 80 per class: 80 test images, so one mistake moves accuracy by 1.25 points, not 1.7.
    config.data.synthetic_images_per_class = 80
    config.data.image_size = 64
    config.data.augment.rotation_degrees = 15.0
    config.model.dropout_rate = 0.2
    config.batch_size = 8
    config.eval_batch_size = 32
    config.num_epochs = 12
    config.optim.warmup_epochs = 0.5
    config.optim.schedule = "cosine"
    config.log_every_steps = 11
