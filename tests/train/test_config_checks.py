"""check_config: every config file passes; each bad value is one line naming its field."""

import pytest

from cervix_jax.train import ConfigError, check_config, train_and_evaluate
from configs import attention92, default, densenet121, rca, resnet50
from tests.train import helpers
from tests.tree_snapshot import snapshot


@pytest.mark.parametrize("module", [default, resnet50, densenet121, rca, attention92])
@pytest.mark.parametrize("arg", [None, "demo", "cropped,demo", "masked"])
def test_every_config_file_passes(module, arg):
    check_config(module.get_config(arg), num_devices=4, num_processes=1)


BAD_VALUES = [
    ("batch_size", 0, "config.batch_size=0: must be a positive multiple"),
    ("batch_size", -8, "config.batch_size=-8"),
    ("batch_size", 6, "config.batch_size=6: must be a positive multiple of the number of devices"),
    ("eval_batch_size", 10, "config.eval_batch_size=10"),
    ("data.image_size", 0, "config.data.image_size=0: expected an image side in pixels >= 32"),
    ("data.variant", "croped", "config.data.variant='croped': expected one of"),
    ("data.fold", 5, "config.data.fold=5: expected a test fold in [0, 5)"),
    ("data.fold", -1, "config.data.fold=-1"),
    ("data.num_folds", 1, "config.data.num_folds=1"),
    ("data.split_scheme", "random", "config.data.split_scheme='random'"),
    ("data.num_workers", -1, "config.data.num_workers=-1"),
    ("model.name", "resnet51", "config.model.name='resnet51': unknown model"),
    ("model.dtype", "float8", "config.model.dtype='float8'"),
    ("model.dropout_rate", 1.0, "config.model.dropout_rate=1.0"),
    ("num_epochs", 0, "config.num_epochs=0: expected >= 1"),
    ("optim.name", "lamb", "config.optim.name='lamb'"),
    ("optim.schedule", "step", "config.optim.schedule='step'"),
    ("optim.lr", 0.0, "config.optim.lr=0.0: expected > 0"),
    ("optim.lr", float("nan"), "config.optim.lr=nan"),
    ("optim.warmup_epochs", 50.0, "config.optim.warmup_epochs=50.0: expected >= 0 and below"),
    ("optim.momentum", 1.5, "config.optim.momentum=1.5"),
    ("label_smoothing", -0.1, "config.label_smoothing=-0.1"),
    ("log_every_steps", 0, "config.log_every_steps=0"),
    ("checkpoint_keep_latest", 0, "config.checkpoint_keep_latest=0"),
]


@pytest.mark.parametrize("field, value, message", BAD_VALUES, ids=lambda v: str(v)[:20])
def test_a_bad_value_is_one_line_naming_its_field(field, value, message):
    config = resnet50.get_config()
    node = config
    *path, last = field.split(".")
    for key in path:
        node = node[key]
    node[last] = value
    with pytest.raises(ConfigError) as error:
        check_config(config, num_devices=4, num_processes=1)
    text = str(error.value)
    assert text.startswith(message) and "\n" not in text, text
    assert f"--config.{field}=" in text  # the option to change


def test_unknown_model_options_are_named():
    config = rca.get_config()
    config.model.options.ca_placment = "last_layer"
    with pytest.raises(ConfigError, match=r"config.model.options: .*ca_placment"):
        check_config(config, num_devices=1, num_processes=1)


def test_processes_count_too():
    config = resnet50.get_config()
    config.eval_batch_size = 6
    config.batch_size = 9  # a multiple of the 3 processes, not of the 2 devices
    with pytest.raises(ConfigError, match=r"devices \(2\) and processes \(3\)"):
        check_config(config, num_devices=2, num_processes=3)
    config.batch_size = 12
    check_config(config, num_devices=2, num_processes=3)


def test_evaluation_checks_what_evaluation_reads_only():
    config = resnet50.get_config()
    config.batch_size = 6  # trained on 6 devices: evaluation does not read it
    config.optim.lr = 0.0
    check_config(config, training=False, num_devices=4, num_processes=1)
    config.eval_batch_size = 6
    with pytest.raises(ConfigError, match="config.eval_batch_size=6"):
        check_config(config, training=False, num_devices=4, num_processes=1)


def test_training_checks_first_and_writes_nothing(tmp_path):
    config = helpers.small_config(num_epochs=0)
    with pytest.raises(ConfigError, match="config.num_epochs=0"):
        train_and_evaluate(config, tmp_path / "run", parts=helpers.parts(config))
    assert snapshot(tmp_path) == {}
