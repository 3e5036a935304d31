"""The real path, end to end: synthetic SIPaKMeD written into the workdir, TFDS + grain, a tiny
registered model, main.py-equivalent train_and_evaluate, then restore_inference_variables."""

import json

import jax
import numpy as np
import pytest
from flax import traverse_util

from cervix_jax import data, models
from cervix_jax.train import restore_inference_variables, train_and_evaluate
from cervix_jax.train.builders import eval_batches
from cervix_jax.train.resume import apply_init_from
from configs import rca


@pytest.mark.slow
def test_synthetic_sipakmed_end_to_end(tmp_path):
    config = rca.get_config("demo")
    config.model.name = "densenet121_rca_tiny"
    config.model.options.ca_reduction = 4
    config.data.synthetic_images_per_class = 10
    config.data.image_size = 32
    config.data.num_workers = 0
    config.num_epochs = 1
    config.batch_size = 8
    config.eval_batch_size = 8
    report = train_and_evaluate(config, tmp_path)

    assert (tmp_path / "tfds").is_dir()  # the synthetic replica went into the workdir
    assert report["num_examples"] == 10 and report["class_names"] == list(data.CLASS_NAMES)
    pred = np.load(tmp_path / "predictions_test.npz")
    assert len(set(pred["image_id"])) == 10
    assert json.loads((tmp_path / "report.json").read_text())["checkpoint_step"] == 30 // 8

    # The explain wing's entry point gives back the same model and weights.
    config2, model, variables = restore_inference_variables(tmp_path)
    assert config2.model.name == "densenet121_rca_tiny"
    assert set(variables) == {"params", "batch_stats"}
    config2.eval_batch_size = 16
    batch = next(iter(eval_batches(config2, data.build_data_module(config2, tmp_path), "test")))
    logits = model.apply(variables, data.normalize(batch["image"]), train=False)
    keep = batch["mask"]
    order = np.argsort(batch["index"][keep])
    np.testing.assert_allclose(
        np.asarray(logits)[keep][order], pred["logits"], rtol=1e-4, atol=1e-5
    )
    assert jax.tree.leaves(variables)[0].sharding.num_devices == len(jax.devices())

    # init_from: another run's workdir, or a converted checkpoint directory. Everything but
    # the classifier head comes from the source.
    fresh = models.init_variables(model, jax.random.PRNGKey(42), 32)
    converted = models.save_converted(variables, tmp_path / "converted")
    for source in (tmp_path, converted):
        merged = apply_init_from(fresh, str(source))
        flat_m = traverse_util.flatten_dict(merged)
        flat_src = traverse_util.flatten_dict(jax.tree.map(np.asarray, variables))
        flat_fresh = traverse_util.flatten_dict(fresh)
        heads = [k for k in flat_m if k[1] == "head"]  # every registered model's classifier
        assert heads and len(heads) < len(flat_m)
        for k, v in flat_m.items():
            expected = flat_fresh[k] if k in heads else flat_src[k]
            np.testing.assert_array_equal(np.asarray(v), np.asarray(expected), err_msg=str(k))
