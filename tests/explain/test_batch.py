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


def test_balanced_chunks_are_as_few_as_the_limit_allows_and_waste_least():
    from cervix_jax.explain import loops

    for steps in range(1, 80):
        for limit in range(1, steps + 1):
            chunk = loops.even_chunk(steps, limit)
            num_chunks = -(-steps // limit)
            assert chunk <= limit and -(-steps // chunk) == num_chunks, (steps, limit)
            _, weights = loops.chunked_schedule("riemann_left", steps, chunk)
            # Padding is below one point per chunk (the plain split pads up to limit - 1).
            assert weights.shape[0] == num_chunks and weights.size - steps < num_chunks


def test_automatic_chunk_size_shares_the_passes_per_device():
    assert batch.PASSES_PER_DEVICE == 32
    uniform = batch.Settings(method="ig", steps=50, baseline="uniform", num_baselines=10)
    # 32 passes // (1 image x 10 baselines) = 3 points; // (2 x 10) = 1; // (4 x 10) -> at least 1
    assert [batch.resolve_chunk_size(uniform, n).chunk_size for n in (1, 2, 4)] == [3, 1, 1]
    black = batch.Settings(method="ig", steps=50, baseline="black")
    # 50 points under a limit of 32 (1 image) or 16 (2): 2 x 25 and 4 x 13 (52 passes), not
    # 2 x 32 and 4 x 16 (64, padded with zero-weight points that cost a pass each).
    assert [batch.resolve_chunk_size(black, n).chunk_size for n in (1, 2)] == [25, 13]
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


def _sobel_maps(images, targets, variables):
    """A map that ignores the weights: the gradient magnitude of the image (Sobel)."""
    del targets, variables
    grey = images.mean(axis=-1)
    padded = jnp.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="edge")
    dx = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    dy = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
    return jnp.sqrt(dx**2 + dy**2)


def test_cascading_randomization_moves_ig_but_not_an_edge_filter(monkeypatch, trained, tmp_path):
    """Adebayo et al.'s acceptance on the trained tiny CNN, through the batch path: IG's maps
    lose their similarity to the trained model's as the layers are re-initialised from the
    head down (reported per image, summarised per stage, plotted), while an edge filter of the
    image, run over the same stages, keeps it."""
    _, model, variables, _, module = trained
    settings = batch.Settings(
        method="ig", steps=8, num_baselines=2, deletion_steps=4, evaluate="randomization"
    )
    metrics = _run(monkeypatch, trained, variables, tmp_path, settings, num_images=4)
    summary = metrics["randomization"]
    assert summary["stages"] == ["original", "Dense_0", "_Head_0", "Conv_0"]
    assert metrics["evaluation"]["randomization"]["kind"] == "cascading"
    print({m: np.round(summary[m]["mean"], 3).tolist() for m in batch.RANDOMIZATION_MEASURES})
    # Measured: spearman 1, 0.27, -0.28, -0.11; spearman_abs 1, 0.80, 0.51, 0.38;
    # pearson_abs 1, 0.92, 0.41, 0.23; ssim 1, 0.85, 0.22, 0.18.
    for measure in batch.RANDOMIZATION_MEASURES:
        curve = summary[measure]["mean"]
        assert curve[0] == pytest.approx(1.0, abs=1e-5), measure
        assert max(curve[1:]) < 0.95 and curve[-1] < 0.5, (measure, curve)
        if measure != "spearman":  # the maps' magnitudes fall stage after stage
            assert np.all(np.diff(curve) < 0), (measure, curve)
        per_image = metrics[f"randomization_{measure}"]["per_image"]
        assert len(per_image) == 4
        assert metrics[f"randomization_{measure}"]["mean"] == pytest.approx(np.mean(curve[1:]))
    saved = np.load(tmp_path / "randomization.npz")
    assert saved["curves"].shape == (4, 4, len(batch.RANDOMIZATION_MEASURES))
    assert list(saved["stages"]) == summary["stages"]
    with Image.open(tmp_path / "randomization.png") as figure:
        assert figure.size[0] > 800
    # The same stages (make_explainer's) around a map that ignores the weights.
    explainer = batch.make_explainer(model, variables, settings, image_size=SIZE)
    images = next(
        data.eval_iterator(
            module.source, module.splits["test"][:4], image_size=SIZE, global_batch_size=4
        )
    )["image"]
    edges = explain.randomization_curve(
        _sobel_maps,
        variables,
        explainer.randomization,
        jnp.asarray(images, jnp.float32),
        jnp.zeros(4, jnp.int32),
    )
    for measure, curve in edges.items():
        np.testing.assert_allclose(curve, 1.0, atol=1e-5, err_msg=measure)


def test_blur_and_guided_ig_side_by_side_with_the_evaluations(monkeypatch, trained, tmp_path):
    """compare_methods: Blur IG with every evaluation but the randomization, and Guided IG
    in a VarGrad tunnel with the complexity only, over the same 4 images, into sub-folders,
    and the methods table. Blur IG's maps sum to f(x) - f(blurred x) (completeness, 24
    Gauss-Legendre points)."""
    config, model, variables, _, module = trained
    monkeypatch.setattr(
        cervix_jax.train, "restore_inference_variables", lambda *a, **k: (config, model, variables)
    )
    monkeypatch.setattr(data, "build_data_module", lambda *a, **k: module)
    evaluate = "random_logit,faithfulness,infidelity,max_sensitivity,complexity"
    options = dict(deletion_steps=4, perturbation_samples=3, noise_samples=3, baseline="black")
    settings = [
        batch.Settings(
            method="blur_ig", steps=24, blur_max_sigma=6.0, evaluate=evaluate, **options
        ),
        batch.Settings(
            method="guided_ig", steps=4, noise_tunnel="vargrad", evaluate="complexity", **options
        ),
    ]
    table = batch.compare_methods(
        "unused", tmp_path, settings, num_images=4, write_images=False, progress=False
    )
    assert table["methods"] == ["blur_ig", "guided_ig + vargrad"]
    assert table["folders"] == {"blur_ig": "blur_ig", "guided_ig + vargrad": "guided_ig_vargrad"}
    runs = {
        label: json.loads((tmp_path / folder / "attribution_metrics.json").read_text())
        for label, folder in table["folders"].items()
    }
    blur = runs["blur_ig"]
    print("blur_ig completeness", blur["completeness_error"]["per_image"])
    assert max(blur["completeness_error"]["per_image"].values()) < 0.02
    assert runs["guided_ig + vargrad"]["completeness_error"]["mean"] is None  # tunnelled
    assert blur["blur_max_sigma"] == 6.0 and blur["baseline"] is None
    assert blur["evaluation"]["fill"] == {"kind": "linear", "noise_std": 2.55, "iterations": 200}
    for key in ("infidelity", "max_sensitivity", "sparseness", "imputed_deletion_auc"):
        values = np.asarray(list(blur[key]["per_image"].values()), np.float64)
        assert len(values) == 4 and np.all(values >= 0), key  # null (None) fails here
        cell = table["cells"]["blur_ig"][key]
        assert cell["mean"] == pytest.approx(values.mean()) and cell["n"] == 4
        assert cell["std"] == pytest.approx(values.std())
    assert table["cells"]["guided_ig + vargrad"]["infidelity"] is None  # not evaluated
    for label, metrics in runs.items():
        assert metrics["num_images"] == 4
        assert all(0 <= v <= 1 for v in metrics["sparseness"]["per_image"].values())
        for name in metrics["figures"].values():
            assert (tmp_path / table["folders"][label] / name).exists(), name
    curves = np.load(tmp_path / "blur_ig" / "curves.npz")
    np.testing.assert_allclose(
        list(blur["imputed_insertion_auc"]["per_image"].values()),
        np.trapezoid(curves["imputed_insertion_curve"], curves["fraction"], axis=-1),
        rtol=1e-4,
    )
    markdown = (tmp_path / "methods_table.md").read_text()
    assert "| guided_ig + vargrad |" in markdown and "| infidelity ↓ |" in markdown


def test_smoothgrad_method_is_the_gradient_in_a_smoothgrad_tunnel(trained):
    """``method='smoothgrad'`` keeps its numbers: SmoothGrad of the input gradient with image
    i's noise from the i-th key, as ``explain.smoothgrad`` computes it."""
    _, model, variables, _, _ = trained
    images = jax.random.uniform(jax.random.key(0), (2, SIZE, SIZE, 3), jnp.float32, 0, 255)
    targets = jnp.array([1, 3])
    keys = jax.random.split(jax.random.key(1), 2)
    method = batch.AttributionMethod(
        model, None, batch.Settings(method="smoothgrad", noise_samples=3)
    )
    maps = jax.jit(method.__call__)(images, targets, variables, keys)
    f = method.score_fn

    @jax.jit
    def expected(image, target, key):
        grad = lambda z: jax.grad(f)(z, target, variables)
        return explain.smoothgrad(grad, image, key, num_samples=3)

    for i in range(2):
        np.testing.assert_allclose(
            maps[i], expected(images[i], targets[i], keys[i]), rtol=1e-4, atol=1e-9
        )


def test_settings_name_the_field_they_refuse():
    for bad, message in (
        (dict(evaluate="all,bogus"), "evaluate='all,bogus': unknown"),
        (dict(evaluate="randomisation"), "unknown \\['randomisation'\\]"),
        (dict(noise_tunnel="bogus"), "noise_tunnel='bogus': expected one of none, smoothgrad"),
        (dict(fill="zeros"), "fill='zeros'"),
        (dict(method="smoothgrad", noise_tunnel="vargrad"), "use method='gradient'"),
        (dict(noise_samples=0), "noise_samples=0: expected at least 1"),
        (dict(randomization_stages=0), "randomization_stages=0"),
        (dict(guided_fraction=1.5), "guided_fraction=1.5: expected at most 1"),
        (dict(blur_max_sigma=0.0), "blur_max_sigma=0.0: expected a number above 0"),
    ):
        with pytest.raises(ValueError, match=message):
            batch.Settings(**bad)
    assert batch.Settings(evaluate="all").evaluate == batch.EVALUATIONS
    picked = batch.Settings(evaluate=["complexity", "randomization"]).evaluate
    assert picked == ("randomization", "complexity")  # in EVALUATIONS' order
    assert batch.metric_keys(batch.Settings(evaluate="complexity"))[-3:] == (
        "sparseness",
        "effective_complexity",
        "entropy_complexity",
    )
