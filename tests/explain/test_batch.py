"""Batch attribution over a split (cervix_jax/explain/batch.py, tools/attribute.py).

A tiny CNN is trained for a few optax steps on the synthetic SIPaKMeD of ``cervix_jax.data``
(where, by construction, the cells are what separates the classes); the checkpoint restore
and the data module of the training wing are replaced by that model and split, so the test
covers everything from the split to the files on 4 fake CPU devices. Measured while writing it
(48 px, 16 test images, predicted class, IG with 4 uniform baselines and 16 steps): cell
localization ratio 3.6 trained vs 1.0 with random weights, Adebayo rank correlation -0.05. In a
side experiment, blurred baselines gave random weights ~4 too (the blurred image differs from
the input mostly around the cells), so they are a poor baseline for this metric.
"""

import json
import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

import cervix_jax.train
from cervix_jax import data, explain
from cervix_jax.explain import batch
from tests.explain import tiny_models

SIZE = 48


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sipakmed")
    data.write_synthetic_sipakmed(root / "raw", 24, 0, image_size=(128, 96))
    source, metadata = data.load_sipakmed(
        ml_collections.ConfigDict(
            dict(
                variant="full",
                manual_dir=os.fspath(root / "raw"),
                tfds_data_dir=os.fspath(root / "tfds"),
                synthetic=False,
            )
        )
    )
    splits = data.split_indices(
        metadata.labels, metadata.groups, scheme="kfold", fold=0, num_folds=4, seed=0
    )
    train_idx = np.concatenate([splits["train"], splits["val"]])
    full = next(
        data.eval_iterator(source, train_idx, image_size=SIZE, global_batch_size=len(train_idx))
    )
    images, labels = jnp.asarray(full["image"], jnp.float32), jnp.asarray(full["label"])
    model = tiny_models.TinyCNN(num_classes=5, features=16)
    random_variables = tiny_models.init(model, jax.random.key(0), SIZE)
    tx = optax.adam(3e-3)

    def loss(params, x, y):
        logits = model.apply({"params": params}, tiny_models.normalize(x), train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    params, opt_state = random_variables["params"], tx.init(random_variables["params"])
    rng = np.random.default_rng(0)
    for i in range(150):
        pick = rng.choice(len(train_idx), 32)
        x = images[pick] if i % 2 else images[pick][:, :, ::-1]
        params, opt_state, value = step(params, opt_state, x, labels[pick])
    assert float(value) < 1.4  # log(5) = 1.61 at chance
    config = ml_collections.ConfigDict(
        dict(
            model=dict(name="tiny_explain_cnn"),
            data=dict(image_size=SIZE, num_workers=0),
        )
    )
    module = SimpleNamespace(source=source, splits=splits, metadata=metadata)
    return config, model, {"params": params}, random_variables, module


def _run(monkeypatch, trained, variables, out, settings, **kwargs):
    config, model, _, _, module = trained
    monkeypatch.setattr(
        cervix_jax.train, "restore_inference_variables", lambda *a, **k: (config, model, variables)
    )
    monkeypatch.setattr(data, "build_data_module", lambda *a, **k: module)
    return batch.attribute_split("unused_workdir", out, settings, progress=False, **kwargs)


def test_ig_points_at_cells_after_training(monkeypatch, trained, tmp_path):
    assert len(jax.devices()) == 4  # images are sharded over 4 fake CPU devices
    _, _, variables, random_variables, module = trained
    settings = batch.Settings(
        method="ig",
        steps=16,
        baseline="uniform",
        num_baselines=4,
        deletion_steps=8,
        sanity_check=True,
    )
    out = tmp_path / "trained"
    metrics = _run(
        monkeypatch, trained, variables, out, settings, num_images=16, per_device_batch=2
    )
    ids = [str(module.metadata.image_ids[i]) for i in module.splits["test"][:16]]
    assert metrics["method"] == "ig" and metrics["steps"] == 16 and metrics["num_images"] == 16
    for key in batch.METRIC_KEYS:
        assert set(metrics[key]["per_image"]) == set(ids), key
        assert np.isfinite(metrics[key]["mean"]), key
    on_disk = json.loads((out / "attribution_metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert (out / "attribution_metrics.md").read_text().startswith("# Attribution metrics: ig")
    for image_id in ids:
        assert (out / f"{image_id}.png").exists()
        assert np.load(out / f"{image_id}.npy").shape == (SIZE, SIZE, 3)
    assert metrics["completeness_error"]["mean"] < 0.2
    assert -1.0 <= metrics["sanity_spearman"]["mean"] <= 1.0
    _check_run_outputs(out, metrics, module, ids)

    random = _run(
        monkeypatch,
        trained,
        random_variables,
        tmp_path / "random",
        settings,
        num_images=16,
        per_device_batch=2,
    )
    trained_ratio = metrics["localization_cells"]["mean"]
    random_ratio = random["localization_cells"]["mean"]
    assert trained_ratio > 1.5, (trained_ratio, random_ratio)
    assert trained_ratio > random_ratio + 0.5, (trained_ratio, random_ratio)
    # Cell level: trained IG leaves less of its mass on the background and points at cells
    # more often than the same network with random weights, and ranks the cells as their
    # occlusion does better than chance (Spearman 0).
    cell_keys = ("cell_share_background", "cell_pointing_game", "occlusion_spearman")
    numbers = {k: (metrics[k]["mean"], random[k]["mean"]) for k in cell_keys}
    print("cell-level scores (trained, random weights):", numbers)
    assert numbers["cell_share_background"][0] < numbers["cell_share_background"][1] - 0.1
    assert numbers["cell_pointing_game"][0] > numbers["cell_pointing_game"][1]
    assert numbers["occlusion_spearman"][0] > 0.2, numbers


def _check_run_outputs(out, metrics, module, ids):
    """The ``images`` block, aggregates, figures and curves of a run (contract.md)."""
    assert list(metrics["images"]) == ids
    for image_id in ids:
        info = metrics["images"][image_id]
        record = int(module.splits["test"][ids.index(image_id)])
        assert info["label"] == int(module.metadata.labels[record])
        assert info["label_name"] == module.metadata.class_names[info["label"]]
        assert info["predicted_name"] == module.metadata.class_names[info["predicted"]]
        assert 0.2 <= info["probability"] <= 1.0 and info["target"] == info["predicted"]
        assert info["panel"] == f"{image_id}.png" and info["map"] == f"{image_id}.npy"
        assert info["source"] is None
        cells = info["cells"]
        assert cells["num_cells"] == len(cells["positive_mass"]) - 1 >= 1
        assert cells["occlusion_drop"][0] is None
        if cells["deciding_cell"]:
            masses = np.where(cells["present"][1:], cells["signed_mass"][1:], -np.inf)
            assert cells["deciding_cell"] == int(np.argmax(masses)) + 1
    by_class = metrics["aggregates"]["by_true_class"]
    assert sum(g["num_images"] for g in by_class.values()) == len(ids)
    correctness = metrics["aggregates"]["by_correctness"]
    assert sum(g["num_images"] for g in correctness.values()) == len(ids)
    for group in by_class.values():
        assert set(group["metrics"]) >= set(batch.METRIC_KEYS + batch.CELL_METRIC_KEYS)
    curves = np.load(out / "curves.npz")
    assert list(curves["image_id"]) == ids
    assert curves["deletion_curve"].shape == (len(ids), metrics["deletion_steps"] + 1)
    np.testing.assert_allclose(
        [metrics["deletion_auc"]["per_image"][i] for i in ids],
        np.trapezoid(curves["deletion_curve"], curves["fraction"], axis=-1),
        rtol=1e-4,
    )
    for name in ("curves.png", "cell_scores.png"):
        with Image.open(out / name) as figure:
            assert figure.size[0] > 600
    markdown = (out / "attribution_metrics.md").read_text()
    assert "## By true class" in markdown and "| occlusion_spearman |" in markdown


@pytest.mark.parametrize("method", ["gradient", "gradcam", "smoothgrad"])
def test_other_methods_write_maps(monkeypatch, trained, tmp_path, method):
    _, _, variables, _, _ = trained
    settings = batch.Settings(method=method, noise_samples=4, deletion_steps=4)
    metrics = _run(
        monkeypatch, trained, variables, tmp_path, settings, num_images=5, per_device_batch=1
    )
    assert metrics["num_images"] == 5  # 5 images over a global batch of 4: padding dropped
    assert metrics["completeness_error"]["mean"] is None  # IG only
    assert 0.0 <= metrics["pointing_game"]["mean"] <= 1.0
    shape = (SIZE, SIZE) if method == "gradcam" else (SIZE, SIZE, 3)
    first = next(iter(metrics["localization_cells"]["per_image"]))
    assert np.load(tmp_path / f"{first}.npy").shape == shape


def test_attention_maps_of_an_attention_network_are_scored(monkeypatch, trained, tmp_path):
    """The batch path of ``method='attention'`` on a tiny soft-mask network (the registry's
    attention networks are tested in test_attention.py; their compile would double this
    file's time)."""
    config, _, _, _, module = trained
    model = tiny_models.TinyAttentionCNN()
    variables = tiny_models.init(model, jax.random.key(0), SIZE)
    monkeypatch.setattr(
        cervix_jax.train, "restore_inference_variables", lambda *a, **k: (config, model, variables)
    )
    monkeypatch.setattr(data, "build_data_module", lambda *a, **k: module)
    settings = batch.Settings(method="attention", deletion_steps=4)
    metrics = batch.attribute_split("unused", tmp_path, settings, num_images=4, progress=False)
    assert metrics["method"] == "attention" and metrics["num_images"] == 4
    for key in batch.METRIC_KEYS[1:] + batch.CELL_METRIC_KEYS[:-2]:
        assert metrics[key]["mean"] is not None, key
    assert metrics["completeness_error"]["mean"] is None  # IG only
    first = next(iter(metrics["images"]))
    attention = np.load(tmp_path / f"{first}.npy")
    assert attention.shape == (SIZE, SIZE) and attention.min() == 0.0  # from its minimum
    assert metrics["images"][first]["panel"] == f"{first}.png"


def test_images_without_outlines_get_nan_for_what_needs_them(trained):
    """File images have no polygons: the step runs without outlines, and every score that
    needs them is NaN while the others are numbers."""
    _, model, variables, _, module = trained
    batch_ = next(
        data.eval_iterator(
            module.source, module.splits["test"][:4], image_size=SIZE, global_batch_size=4
        )
    )
    settings = batch.resolve_chunk_size(batch.Settings(method="gradient", deletion_steps=4), 4)
    out = batch.explain_step(
        model,
        None,
        settings,
        variables,
        None,
        batch_["image"],
        batch_["label"],
        None,
        jax.random.key(0),
    )
    for key in (
        "localization_cells",
        "localization_nuclei",
        "pointing_game",
        *batch.CELL_METRIC_KEYS,
    ):
        assert np.isnan(np.asarray(out[key])).all(), key
    assert np.isfinite(np.asarray(out["deletion_auc"])).all()
    assert not np.asarray(out["occlusion_drop"]).any()
    assert out["occlusion_drop"].shape == (4, settings.max_cells + 1)


def test_refusals_come_before_any_work(monkeypatch, trained, tmp_path):
    _, _, variables, _, module = trained
    out = tmp_path / "out"
    with pytest.raises(explain.ExplainError, match="method='attention' needs a network"):
        _run(monkeypatch, trained, variables, out, batch.Settings(method="attention"))
    first = str(module.metadata.image_ids[module.splits["test"][0]])
    with pytest.raises(explain.ExplainError, match=f"image {first} has .* cells, more than"):
        _run(monkeypatch, trained, variables, out, batch.Settings(max_cells=1), num_images=1)
    assert not out.exists()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="method='lime': expected one of ig, blur_ig"):
        batch.Settings(method="lime")
    with pytest.raises(ValueError, match="target"):
        batch.Settings(target="most_likely")
    with pytest.raises(ValueError, match="max_cells"):
        batch.Settings(max_cells=0)


def test_automatic_chunk_size_shares_the_passes_per_device():
    assert batch.PASSES_PER_DEVICE == 32
    uniform = batch.Settings(method="ig", steps=50, baseline="uniform", num_baselines=10)
    # 32 passes // (1 image x 10 baselines) = 3 points; // (2 x 10) = 1; // (4 x 10) -> at least 1
    assert [batch.resolve_chunk_size(uniform, n).chunk_size for n in (1, 2, 4)] == [3, 1, 1]
    black = batch.Settings(method="ig", steps=50, baseline="black")
    assert batch.resolve_chunk_size(black, 2).chunk_size == 16
    few_steps = batch.Settings(method="ig", steps=8, baseline="black")
    assert batch.resolve_chunk_size(few_steps, 1).chunk_size == 8  # at most `steps`
    given = batch.Settings(method="ig", chunk_size=5, occlusion_chunk=3)
    assert batch.resolve_chunk_size(given, 1) == given
    gradient = batch.Settings(method="gradient")
    assert batch.resolve_chunk_size(gradient, 1).chunk_size is None
    # Occlusion: 32 forward passes per device, whole cells of every image of the device.
    assert [batch.resolve_chunk_size(gradient, n).occlusion_chunk for n in (1, 4, 64)] == [
        32,
        8,
        1,
    ]
    few_cells = batch.Settings(method="gradient", max_cells=5)
    assert batch.resolve_chunk_size(few_cells, 1).occlusion_chunk == 5
