"""Default configuration: the paper's protocol (224x224, Adam 1e-3, batch 16, 50 epochs).

Per-model files (`resnet50.py`, `densenet121.py`, `rca.py`, `attention92.py`) start from
`get_config()` here and change the model. Every knob a researcher turns lives in this file.
"""

from __future__ import annotations

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Returns the default (paper) configuration."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "resnet50"
    config.model.dropout_rate = 0.5
    config.model.dtype = "float32"  # compute dtype; parameters stay float32

    config.data = ml_collections.ConfigDict()
    config.data.variant = "full"  # full | cropped | masked
    config.data.image_size = 224
    config.data.manual_dir = ""  # folder with the five SIPaKMeD class archives (zipped or not)
    config.data.tfds_data_dir = ""  # where TFDS writes the prepared dataset; '' = TFDS default
    config.data.synthetic = False  # generate the synthetic SIPaKMeD into manual_dir first
    config.data.synthetic_images_per_class = 40
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
    config.optim.name = "adam"
    config.optim.lr = 1e-3
    config.optim.schedule = "constant"  # constant | cosine
    config.optim.warmup_epochs = 0.0
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0  # 0 = off
    config.label_smoothing = 0.0
    config.class_balanced_loss = False

    config.init_from = ""  # converted torchvision checkpoint dir, or another run's workdir
    config.log_every_steps = 10
    config.checkpoint_keep_latest = 1
    config.checkpoint_keep_best = 1
    return config
