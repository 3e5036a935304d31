"""cervix_jax.load -> TrainedModel: predictions as the run evaluated them, maps as the attribution
tool makes them, embeddings as the head reads them, and bad inputs named.

On the session's tiny trained workdir (tests/conftest.py), 4 fake CPU devices; the 1-device
analysis of this 4-device checkpoint is tests/tools/test_image_tools.py.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from PIL import Image

import cervix_jax
from cervix_jax import analysis, data, train
from cervix_jax.explain import batch


@pytest.fixture(scope="module")
def model(tiny_trained_workdir):
    return cervix_jax.load(tiny_trained_workdir)


def test_predict_gives_the_runs_test_predictions(model, tiny_trained_workdir):
    saved = np.load(tiny_trained_workdir / "predictions_test.npz")
    split = model.read_split("test")
    assert split["index"].tolist() == saved["index"].tolist()
    assert split["image_id"].tolist() == saved["image_id"].tolist()
    # Two global batches of 4 (4 devices), the second padded: [test images, first two again].
    images = [*split["image"], *split["image"][:2]]
    predictions = model.predict(images, batch_size=3)
    n = len(saved["pred"])
    assert predictions.classes[:n].tolist() == saved["pred"].tolist()
    np.testing.assert_allclose(predictions.logits[:n], saved["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(predictions.logits[n:], predictions.logits[:2])
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert predictions.names[0] == data.CLASS_NAMES[int(saved["pred"][0])]


def test_every_form_of_an_image_is_the_same_input(model, tmp_path):
    image = model.read_split("test", num_images=1)["image"][0]
    big = np.asarray(Image.fromarray(image).resize((96, 80), Image.NEAREST))
    Image.fromarray(big).save(tmp_path / "cell.png")
    forms = [
        tmp_path / "cell.png",
        str(tmp_path / "cell.png"),
        Image.fromarray(big),
        big,
        big.astype(np.uint16) * 257,  # 16-bit
        np.concatenate([big, np.full_like(big[..., :1], 255)], -1),  # RGBA
    ]
    inputs = model.inputs(forms)
    assert inputs.shape == (6, model.image_size, model.image_size, 3)
    for row in inputs[1:]:
        np.testing.assert_array_equal(row, inputs[0])
    logits = model.predict(forms).logits
    np.testing.assert_array_equal(logits, np.repeat(logits[:1], 6, axis=0))
    gray = model.predict([big[..., 0], big[..., :1]]).logits  # [H, W] and [H, W, 1]
    np.testing.assert_array_equal(gray[0], gray[1])


def test_embed_is_what_the_classifier_head_reads(model):
    images = model.read_split("test")["image"]
    features = model.embed(images)
    head = jax.device_get(model.variables["params"]["head"])
    assert features.shape == (len(images), head["kernel"].shape[0])
    np.testing.assert_allclose(
        features @ head["kernel"] + head["bias"],
        model.predict(images).logits,
        rtol=1e-4,
        atol=1e-5,
    )
    points, explained = analysis.pca(features)
    assert points.shape == (len(images), 2) and 0 < explained[1] <= explained[0] <= 1


def test_pca_recovers_a_known_plane():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(50, 2)) * [5.0, 2.0]
    basis = np.linalg.qr(rng.normal(size=(6, 6)))[0][:2]  # orthonormal rows
    points, explained = analysis.pca(plane @ basis + 3.0)
    np.testing.assert_allclose(explained.sum(), 1.0, atol=1e-9)  # all variance in 2 axes
    gram = (points - points.mean(0)).T @ (points - points.mean(0))
    np.testing.assert_allclose(gram[0, 1], 0.0, atol=1e-8)  # uncorrelated axes
    centred = plane - plane.mean(0)
    np.testing.assert_allclose(np.linalg.norm(points), np.linalg.norm(centred), rtol=1e-9)


def test_explain_gives_the_attribution_tools_maps_and_scores(model, tiny_trained_workdir, tmp_path):
    options = dict(steps=4, baseline="uniform", num_baselines=2, deletion_steps=4, seed=3)
    # Six images in two batches of 4 (the second padded): the PRNG key differs per batch.
    metrics = batch.attribute_split(
        tiny_trained_workdir,
        tmp_path,
        batch.Settings(method="ig", **options),
        split="train",
        num_images=6,
        per_device_batch=1,
        progress=False,
    )
    split = model.read_split("train", num_images=6)
    explanations = model.explain(
        split["image"],
        "ig",
        labels=split["label"],
        cell_masks=split["cell_mask"],
        nucleus_masks=split["nucleus_mask"],
        per_device_batch=1,
        **options,
    )
    assert explanations.maps.shape == (6, model.image_size, model.image_size, 3)
    for k, image_id in enumerate(split["image_id"]):
        np.testing.assert_array_equal(explanations.maps[k], np.load(tmp_path / f"{image_id}.npy"))
        for key in batch.METRIC_KEYS:
            value = metrics[key]["per_image"][image_id]
            assert value is not None, key
            np.testing.assert_allclose(explanations.scores[key][k], value, rtol=1e-6)
        entry = metrics["images"][image_id]
        assert entry["label"] == int(split["label"][k]) and entry["source"] is None
        assert entry["predicted"] == int(explanations.predictions.classes[k])
        assert entry["target"] == int(explanations.targets[k]) == entry["predicted"]
    on_disk = json.loads((tmp_path / "attribution_metrics.json").read_text())
    assert on_disk["images"] == metrics["images"]
    # Without masks the same maps, and the localization metrics are undefined.
    bare = model.explain(split["image"][:2], per_device_batch=1, **options)
    np.testing.assert_array_equal(bare.maps, explanations.maps[:2])
    for key in ("localization_cells", "localization_nuclei", "pointing_game"):
        assert np.isnan(bare.scores[key]).all(), key
    assert np.isfinite(bare.scores["deletion_auc"]).all()
    assert bare.labels.tolist() == [data.UNKNOWN_LABEL] * 2


def test_bad_inputs_are_named(model, tmp_path):
    good = model.read_split("test", num_images=1)["image"][0]
    two = [good, good]
    missing = tmp_path / "missing.png"
    cases = [
        (lambda: model.predict(good), data.ImageError, r"shape \(32, 32, 3\); pass a list"),
        (lambda: model.predict([]), ValueError, "images: empty"),
        (lambda: model.predict([good, missing]), data.ImageError, f"{missing}: cannot be read"),
        (lambda: model.predict([good] * 5 + [good[:4]]), data.ImageError, r"images\[5\]: 32x4"),
        (lambda: model.predict([good / 255.0]), data.ImageError, r"images\[0\]: dtype float64"),
        (lambda: model.predict(two, batch_size=0), ValueError, "batch_size=0: expected a positive"),
        (lambda: model.explain(two, "lime"), ValueError, "method='lime': expected one of"),
        (lambda: model.explain(two, stepz=3), ValueError, r"unknown option\(s\) \['stepz'\]"),
        (lambda: model.explain(two, target="label"), ValueError, "target='label' needs labels"),
        (lambda: model.explain(two, target="7"), ValueError, "expected a class index below 5"),
        (lambda: model.explain(two, labels=[0]), ValueError, r"labels of shape \(1,\); expected 2"),
        (lambda: model.explain(two, labels=[0, 5]), ValueError, r"expected 0..4"),
        (
            lambda: model.explain(two, cell_masks=[np.ones((32, 32)), np.ones((8, 8))]),
            data.ImageError,
            r"cell_masks\[1\]: shape \(8, 8\); expected its image's height and width \(32, 32\)",
        ),
        (lambda: model.read_split("holdout"), ValueError, "split='holdout': expected one of"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_load_refuses_what_is_not_a_trained_workdir(tmp_path, tiny_trained_workdir):
    with pytest.raises(train.TrainingError, match=r"not a training workdir \(no config.json and"):
        cervix_jax.load(tmp_path)
    (tmp_path / "config.json").write_text((tiny_trained_workdir / "config.json").read_text())
    with pytest.raises(train.TrainingError, match=r"not a training workdir \(no checkpoints\)"):
        cervix_jax.load(tmp_path)
    with pytest.raises(ValueError, match="which='bets': expected 'best', 'latest' or a step"):
        cervix_jax.load(tiny_trained_workdir, which="bets")
    with pytest.raises(train.TrainingError, match="no checkpoint at step 99"):
        cervix_jax.load(tiny_trained_workdir, which=99)
