"""cervix_jax.study.grid: flag checking, the cells, their configs and the ImageNet policy."""

import json

import pytest

from cervix_jax import study
from cervix_jax.study import Cell, StudyError
from configs import default

GRID = dict(models_text="resnet50,densenet121_rca", variants_text="full,cropped", num_folds=3)


def _weights(tmp_path, arch):
    folder = tmp_path / arch
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({"arch": arch}))
    return folder


def test_cells_in_grid_order_and_only():
    spec = study.make_spec(**GRID, run_folds_text="2,0")
    assert spec.folds == (0, 2)
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 2
    assert cells[0] == Cell("resnet50", "full", 0) and cells[-1] == Cell(
        "densenet121_rca", "cropped", 2
    )
    assert study.parse_only("densenet121_rca/full/2", spec) == Cell("densenet121_rca", "full", 2)
    assert study.parse_only("5", spec) == cells[5]  # an array job's task index


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(models_text="resnet50,vgg16"), "--models: unknown ['vgg16']"),
        (dict(models_text=""), "--models is empty"),
        (dict(models_text="resnet50,resnet50"), "names an entry twice"),
        (dict(variants_text="full,blurry"), "--variants: unknown ['blurry']"),
        (dict(num_folds=2), "--folds=2: K-fold needs K >= 3"),
        (dict(run_folds_text="0,3"), "--run_folds=0,3: folds are 0..2"),
        (dict(init_from_text="densenet121"), "expected ARCH:DIR"),
        (dict(init_from_text="vgg:/tmp"), "ARCH is resnet50 or densenet121"),
        (dict(init_from_text="densenet121:/no/such/dir"), "is not a folder"),
        (dict(pretrained_text="attention92"), "have no ImageNet weights"),
        (dict(bootstrap_samples=10), "--bootstrap_samples=10: must be >= 100"),
        (dict(explain=study.ExplainSpec(steps=0)), "--ig_steps=0: must be >= 1"),
    ],
)
def test_make_spec_refuses_bad_flags_in_one_line(change, message):
    with pytest.raises(StudyError) as e:
        study.make_spec(**{**GRID, **change})
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("resnet50/full", "expected model/variant/fold"),
        ("resnet50/masked/0", "not in the grid"),
        ("densenet121/full/0", "not in the grid"),
        ("12", "the grid has 12 cells"),
    ],
)
def test_parse_only_refuses_cells_outside_the_grid(text, message):
    spec = study.make_spec(**GRID)
    with pytest.raises(StudyError, match=message):
        study.parse_only(text, spec)


def test_weights_follow_the_paper_by_default(tmp_path):
    dense, res = _weights(tmp_path, "densenet121"), _weights(tmp_path, "resnet50")
    grid = dict(GRID, models_text="resnet50,attention92,densenet121,densenet121_rca")
    spec = study.make_spec(**grid, init_from_text=f"densenet121:{dense},resnet50:{res}")
    # The paper: ImageNet DenseNets; ResNet-50 and the attention network from scratch.
    assert spec.init_for("densenet121") == spec.init_for("densenet121_rca") == str(dense)
    assert spec.init_for("resnet50") == spec.init_for("attention92") == ""
    everyone = study.make_spec(
        **grid,
        init_from_text=f"densenet121:{dense},resnet50:{res}",
        pretrained_text="resnet50,densenet121",
    )
    assert everyone.init_for("resnet50") == str(res) and everyone.init_for("densenet121_rca") == ""
    with pytest.raises(StudyError, match="holds weights of 'resnet50'"):
        study.make_spec(**grid, init_from_text=f"densenet121:{res}")


def test_cell_config_and_spec_round_trip(tmp_path):
    dense = _weights(tmp_path, "densenet121")
    spec = study.make_spec(**GRID, init_from_text=f"densenet121:{dense}")
    base = default.get_config("demo")
    config = study.cell_config(base, spec, Cell("densenet121_rca", "cropped", 1), tmp_path / "w")
    assert (config.model.name, config.data.variant, config.data.fold) == (
        "densenet121_rca",
        "cropped",
        1,
    )
    assert config.data.num_folds == 3 and config.init_from == str(dense)
    assert config.data.tfds_data_dir == str((tmp_path / "w").absolute() / "tfds")
    assert base.model.name == "resnet50"  # the base is left alone
    assert study.StudySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(StudyError, match="holds no study"):
        study.load_spec(tmp_path / "nothing")
