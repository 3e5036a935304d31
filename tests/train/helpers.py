"""Shared pieces of the training tests: a tiny Linen model, a learnable synthetic image set and
a small config."""

from __future__ import annotations

import dataclasses
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.data import ArraySource, DataModule, array_data_module, augment, normalize
from cervix_jax.train import Parts
from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train.optim import make_optimizer, make_schedule
from cervix_jax.train.resume import abstract_train_state
from configs import default

CLASS_NAMES = ("a", "b", "c", "d", "e")


class TinyNet(nn.Module):
    """Conv-BN-ReLU x2, global average pool, dropout, dense: BatchNorm and dropout are what
    make state handling and device-count independence non-trivial. No conv bias before
    BatchNorm: its gradient is zero up to rounding, which Adam would amplify into noise."""

    num_classes: int = 5
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), strides=2, use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.Conv(16, (3, 3), strides=2, use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = x.mean(axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


def learnable_images(n_per_class: int, size: int = 32, seed: int = 0):
    """``image [N, S, S, 3] uint8``, ``label [N]``: each class a colour plus noise, so rotation
    and flips keep the class and a tiny network learns it in a few dozen steps."""
    rng = np.random.default_rng(seed)
    colours = np.array(
        [[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40], [40, 200, 200]], np.float32
    )
    labels = np.repeat(np.arange(5), n_per_class)
    rng.shuffle(labels)
    noise = rng.normal(0, 40, size=(len(labels), size, size, 3))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return {"image": images, "label": labels.astype(np.int32)}


def data_module(n_per_class: int = 16, size: int = 32, seed: int = 0) -> DataModule:
    arrays = learnable_images(n_per_class, size, seed)
    n = len(arrays["label"])
    idx = np.arange(n)
    splits = {
        "train": idx[: n * 3 // 5],
        "val": idx[n * 3 // 5 : n * 4 // 5],
        "test": idx[n * 4 // 5 :],
    }
    return array_data_module(arrays, splits, CLASS_NAMES)


def small_config(**overrides):
    config = default.get_config()
    config.model.name = "tiny_test_net"
    config.data.image_size = 32
    config.data.num_workers = 0  # decode in the test process: no grain worker start-up
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_epochs = 2
    config.log_every_steps = 2
    config.optim.lr = 3e-3
    for key, value in overrides.items():
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return config


def aug_fn(config):
    return lambda key, images: augment(key, images, config.data.augment)


def parts(config, data: DataModule | None = None, **changes) -> Parts:
    """Injected parts for train_and_evaluate: tiny model, in-memory data (``data`` or a fresh
    ``data_module()``), the data wing's device-side augment/normalize; ``changes`` replace
    any of them."""
    injected = Parts(
        data=data_module() if data is None else data,
        model=TinyNet(),
        augment_fn=aug_fn(config),
        normalize_fn=normalize,
    )
    return dataclasses.replace(injected, **changes)


def final_state(workdir, config, devices=None, step=None):
    """The whole ``TrainState`` (optimizer state included) of a ``TinyNet`` run's checkpoint
    ``step`` (default: the latest), restored on ``devices`` (default: all)."""
    mesh = mesh_lib.make_mesh(devices)
    manager = ckpt_lib.make_manager(workdir / "checkpoints", read_only=True)
    step = manager.latest_step() if step is None else step
    tx = make_optimizer(config.optim, make_schedule(config.optim, 1, config.num_epochs))
    abstract = abstract_train_state(TinyNet(), tx, config.data.image_size, mesh)
    state, _, _ = ckpt_lib.restore(manager, step, abstract)
    manager.close()
    return state


def tree_allclose(a, b, rtol=1e-5, atol=1e-6) -> bool:
    leaves = jax.tree.leaves(
        jax.tree.map(
            lambda x, y: np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol), a, b
        )
    )
    return all(leaves)


__all__ = ["jnp", "nn"]


def multihost_config():
    """The run of the multi-host test (2 processes x 2 devices vs 1 process x 4 devices)."""
    return small_config(num_epochs=2)


class _SlowSource(ArraySource):
    """Records that take ``delay_s`` to read, so that a run lasts long enough to be killed
    mid-epoch."""

    def __init__(self, arrays, delay_s: float):
        super().__init__(arrays)
        self._delay_s = delay_s

    def __getitem__(self, i: int) -> dict:
        time.sleep(self._delay_s)
        return super().__getitem__(i)


def slow_data_module(delay_s: float = 0.1) -> DataModule:
    """``data_module()`` whose records take ``delay_s`` each to read (8 per training batch)."""
    dm = data_module()
    arrays = learnable_images(16, 32, 0)
    return DataModule(_SlowSource(arrays, delay_s), dm.splits, dm.metadata)
