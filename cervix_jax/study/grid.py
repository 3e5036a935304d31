"""The study's grid: (model, variant, fold) cells, what is asked of them, and their configs.

``StudySpec`` is everything a study command asks (models, variants, folds, ImageNet weights,
the explanation protocol, the statistics); `make_spec` builds it from flag values and refuses
anything wrong with one line naming the flag, before any work. A cell's run lives in
``WORKDIR/runs/<model>/<variant>/fold_<k>``; its config is the study's base config with the
cell's model, variant, fold and initialisation (`cell_config`).

ImageNet initialisation follows the paper by default: the DenseNets (``densenet121``,
``densenet121_rca``) start from ImageNet weights when ``--init_from=densenet121:DIR`` gives
them; ResNet-50 and the Residual Attention Network train from scratch (the paper's baseline ran
with ``pretrained=False``; attention92 has no ImageNet weights). ``pretrained`` changes which
models use the weights that are given.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from cervix_jax import files, models
from cervix_jax.data import VARIANTS
from cervix_jax.explain import PAPER_PRESET, batch
from cervix_jax.study.crossval import fold_config
from cervix_jax.study.errors import StudyError

PAPER_MODELS: tuple[str, ...] = ("resnet50", "attention92", "densenet121", "densenet121_rca")
PAPER_PRETRAINED: tuple[str, ...] = ("densenet121", "densenet121_rca")
# The torchvision architecture whose ImageNet weights a model can start from.
BACKBONES: dict[str, str] = {
    "resnet50": "resnet50",
    "densenet121": "densenet121",
    "densenet121_rca": "densenet121",
}
SPEC_FILE = "study_spec.json"


@dataclasses.dataclass(frozen=True, order=True)
class Cell:
    """One training run of the grid."""

    model: str
    variant: str
    fold: int

    @property
    def name(self) -> str:
        return f"{self.model}/{self.variant}/{self.fold}"

    def run_dir(self, workdir: str | os.PathLike) -> Path:
        return Path(workdir) / "runs" / self.model / self.variant / f"fold_{self.fold}"


@dataclasses.dataclass(frozen=True)
class ExplainSpec:
    """The explanation of each run's test fold: integrated gradients with the paper's protocol
    (``cervix_jax.explain.PAPER_PRESET``); ``steps`` and ``num_baselines`` may be lowered (a
    demo) and are recorded. ``num_images`` 0 = the whole test fold."""

    enabled: bool = True
    steps: int = PAPER_PRESET["steps"]
    num_baselines: int = PAPER_PRESET["num_baselines"]
    num_images: int = 0
    per_device_batch: int = 1

    def settings(self) -> batch.Settings:
        return batch.Settings(
            method="ig",
            steps=self.steps,
            ig_method=PAPER_PRESET["method"],
            baseline=PAPER_PRESET["baseline"],
            num_baselines=self.num_baselines,
            target=PAPER_PRESET["target"],
            score=PAPER_PRESET["score"],
        )

    @property
    def is_paper_protocol(self) -> bool:
        return (self.steps, self.num_baselines) == (
            PAPER_PRESET["steps"],
            PAPER_PRESET["num_baselines"],
        )


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What a study command asks; saved as ``WORKDIR/study_spec.json`` (``--collect`` reads it).

    Attributes:
      models, variants: the grid's rows and columns, in the order given.
      num_folds: K of the grouped K-fold split; ``folds``: the folds run (all K by default).
      init_from: ``(backbone, folder)`` pairs of converted ImageNet weights.
      pretrained: the models that start from their backbone's weights when given.
      explain: the explanation protocol.
      bootstrap_samples, seed: of the paired bootstrap.
    """

    models: tuple[str, ...]
    variants: tuple[str, ...]
    num_folds: int
    folds: tuple[int, ...]
    init_from: tuple[tuple[str, str], ...] = ()
    pretrained: tuple[str, ...] = PAPER_PRETRAINED
    explain: ExplainSpec = ExplainSpec()
    bootstrap_samples: int = 2000
    seed: int = 0

    def cells(self) -> list[Cell]:
        """Every cell, models outermost, then variants, then folds (the ``--only`` index)."""
        return [Cell(m, v, k) for m in self.models for v in self.variants for k in self.folds]

    def init_for(self, model: str) -> str:
        """The weights folder ``model`` starts from, or '' (from scratch)."""
        if model not in self.pretrained:
            return ""
        return dict(self.init_from).get(BACKBONES.get(model, ""), "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StudySpec:
        fields = {**d, "explain": ExplainSpec(**d["explain"])}
        for key in ("models", "variants", "folds", "pretrained"):
            fields[key] = tuple(d[key])
        fields["init_from"] = tuple(tuple(pair) for pair in d["init_from"])
        return cls(**fields)


def split_list(text: str) -> list[str]:
    """``'a, b,,c'`` -> ``['a', 'b', 'c']``."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _check_names(flag: str, names: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
    if not names:
        raise StudyError(f"--{flag} is empty: give at least one of {', '.join(known)}.")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StudyError(f"--{flag}: unknown {unknown}; expected some of {', '.join(known)}.")
    if len(set(names)) != len(names):
        raise StudyError(f"--{flag}={','.join(names)} names an entry twice.")
    return tuple(names)


def _check_folds(num_folds: int, run_folds: Sequence[str]) -> tuple[int, ...]:
    if num_folds < 3:
        raise StudyError(
            f"--folds={num_folds}: K-fold needs K >= 3 (each run has a test fold, a validation "
            "fold and training folds); run a subset with --run_folds=0,1."
        )
    if not run_folds:
        return tuple(range(num_folds))
    if not all(f.isdigit() and int(f) < num_folds for f in run_folds):
        raise StudyError(f"--run_folds={','.join(run_folds)}: folds are 0..{num_folds - 1}.")
    folds = tuple(sorted({int(f) for f in run_folds}))
    return folds


def parse_init_from(text: str) -> tuple[tuple[str, str], ...]:
    """``'densenet121:DIR,resnet50:DIR2'`` -> pairs, each folder a converted checkpoint of that
    architecture (``tools/convert_torchvision.py``)."""
    pairs = []
    for item in split_list(text):
        arch, sep, folder = item.partition(":")
        if not sep or not folder:
            raise StudyError(f"--init_from item {item!r}: expected ARCH:DIR, e.g. densenet121:DIR.")
        if arch not in ("resnet50", "densenet121"):
            raise StudyError(f"--init_from {item!r}: ARCH is resnet50 or densenet121.")
        if not Path(folder).is_dir():
            raise StudyError(f"--init_from {item!r}: {folder} is not a folder.")
        found = models.converted_metadata(folder).get("arch")
        if found != arch:
            raise StudyError(
                f"--init_from {item!r}: {folder} holds weights of {found!r} (metadata.json), not "
                f"{arch!r}; convert them with tools/convert_torchvision.py --arch={arch}."
            )
        pairs.append((arch, os.fspath(Path(folder).absolute())))
    return tuple(pairs)


def make_spec(
    *,
    models_text: str,
    variants_text: str,
    num_folds: int,
    run_folds_text: str = "",
    init_from_text: str = "",
    pretrained_text: str = ",".join(PAPER_PRETRAINED),
    explain: ExplainSpec = ExplainSpec(),
    bootstrap_samples: int = 2000,
    seed: int = 0,
) -> StudySpec:
    """A `StudySpec` from the flag values, every one checked (`StudyError`: one line naming the
    flag, what was found and what is expected)."""
    grid_models = _check_names("models", split_list(models_text), models.MODEL_NAMES)
    variants = _check_names("variants", split_list(variants_text), VARIANTS)
    pretrained = tuple(split_list(pretrained_text))
    no_weights = [m for m in pretrained if m not in BACKBONES]
    if no_weights:
        raise StudyError(
            f"--pretrained_models: {no_weights} have no ImageNet weights; models with them: "
            f"{', '.join(BACKBONES)}."
        )
    for flag, value, low in (
        ("ig_steps", explain.steps, 1),
        ("ig_baselines", explain.num_baselines, 1),
        ("explain_images", explain.num_images, 0),
        ("per_device_batch", explain.per_device_batch, 1),
        ("bootstrap_samples", bootstrap_samples, 100),
    ):
        if value < low:
            raise StudyError(f"--{flag}={value}: must be >= {low}.")
    return StudySpec(
        models=grid_models,
        variants=variants,
        num_folds=int(num_folds),
        folds=_check_folds(int(num_folds), split_list(run_folds_text)),
        init_from=parse_init_from(init_from_text),
        pretrained=pretrained,
        explain=explain,
        bootstrap_samples=int(bootstrap_samples),
        seed=int(seed),
    )


def parse_only(text: str, spec: StudySpec) -> Cell:
    """The cell ``--only`` names: ``model/variant/fold``, or its index in ``spec.cells()``
    (``--only=$SLURM_ARRAY_TASK_ID``)."""
    cells = spec.cells()
    if text.isdigit():
        if int(text) >= len(cells):
            raise StudyError(
                f"--only={text}: the grid has {len(cells)} cells (0..{len(cells) - 1})."
            )
        return cells[int(text)]
    parts = text.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        raise StudyError(f"--only={text!r}: expected model/variant/fold or a cell index.")
    cell = Cell(parts[0], parts[1], int(parts[2]))
    if cell not in cells:
        raise StudyError(
            f"--only={text}: not in the grid (--models={','.join(spec.models)}, "
            f"--variants={','.join(spec.variants)}, folds {list(spec.folds)})."
        )
    return cell


def cell_config(
    base: ml_collections.ConfigDict, spec: StudySpec, cell: Cell, workdir: str | os.PathLike
) -> ml_collections.ConfigDict:
    """The training config of ``cell``: ``base`` with the cell's model, variant, fold, the
    study's K and the model's initialisation; the data (a synthetic replica) shared by the
    whole study in ``WORKDIR/tfds``."""
    config = base.copy_and_resolve_references()
    with config.unlocked():
        config.model.name = cell.model
        config.data.variant = cell.variant
        config.data.split_scheme = "kfold"
        config.data.num_folds = spec.num_folds
        config.init_from = spec.init_for(cell.model)
    return fold_config(config, cell.fold, workdir)


def save_spec(workdir: str | os.PathLike, spec: StudySpec) -> None:
    """``WORKDIR/study_spec.json`` (the grid ``--collect`` assembles)."""
    files.atomic_write_json(Path(workdir) / SPEC_FILE, spec.to_dict())


def load_spec(workdir: str | os.PathLike) -> StudySpec:
    path = Path(workdir) / SPEC_FILE
    if not path.is_file():
        raise StudyError(
            f"{path} not found: {workdir} holds no study; run tools/study.py --workdir={workdir} "
            "with the grid's flags first."
        )
    return StudySpec.from_dict(json.loads(path.read_text()))
