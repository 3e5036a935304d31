"""The paper's study in one command: models x variants x folds, trained, explained and compared.

    python tools/study.py --workdir=workdirs/study --config.data.manual_dir=/path/to/sipakmed \
        [--models=resnet50,attention92,densenet121,densenet121_rca] \
        [--variants=full,cropped,masked] [--folds=5] [--init_from=densenet121:weights/densenet121]

Each cell (model, variant, fold) trains in ``WORKDIR/runs/<model>/<variant>/fold_<k>`` with the
grouped K-fold split (test fold k, validation fold k+1), then integrated gradients with the
paper's protocol explain its test fold (``attributions/``) and the run gets its
``report.html``. Then ``WORKDIR/study.json``, ``study.md`` and ``study.html``: per (model,
variant) mean, sd and 95% t interval over folds of accuracy, balanced accuracy, macro F1 and the
localization scores; paired comparisons between models on the same folds; the paper's
single-split numbers beside ours.

Re-running the same command skips finished cells and resumes an interrupted one. ``--only``
runs one cell (``model/variant/fold`` or its index, for array jobs: README); ``--collect``
assembles whatever has finished of the grid saved in WORKDIR by the last command (only
``--bootstrap_samples`` and ``--seed`` may change) and lists what is missing.
``--init_from=ARCH:DIR`` gives converted ImageNet weights (tools/convert_torchvision.py); as in
the paper, the DenseNets start from them and ResNet-50 and the Residual Attention Network
train from scratch (``--pretrained_models`` changes that). Every flag is checked before any work.
"""

from __future__ import annotations

import os
import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
    from cervix_jax.train import distributed, flag_parsing
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
FLAGS = flags.FLAGS
flag_parsing.define_config_file(
    os.path.join(_DEFAULT_CONFIG, "default.py"),
    "Base config of every cell (the study sets model, variant, fold and init_from).",
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study folder (runs/, study.json, study.html).")
_MODELS = flags.DEFINE_string(
    "models", "resnet50,attention92,densenet121,densenet121_rca", "Models (grid rows)."
)
_VARIANTS = flags.DEFINE_string("variants", "full,cropped,masked", "SIPaKMeD variants.")
_FOLDS = flags.DEFINE_integer("folds", 5, "K of the grouped K-fold split (>= 3).")
_RUN_FOLDS = flags.DEFINE_string("run_folds", "", "Folds to run, e.g. 0,1 (default: all K).")
_ONLY = flags.DEFINE_string("only", "", "Run one cell: model/variant/fold or its index.")
_COLLECT = flags.DEFINE_bool("collect", False, "Only assemble the finished cells of WORKDIR.")
_INIT_FROM = flags.DEFINE_string(
    "init_from", "", "ImageNet weights: ARCH:DIR[,ARCH:DIR] (ARCH resnet50 or densenet121)."
)
_PRETRAINED = flags.DEFINE_string(
    "pretrained_models",
    "densenet121,densenet121_rca",
    "Models that start from their architecture's --init_from weights (the paper's choice).",
)
_EXPLAIN = flags.DEFINE_bool("explain", True, "Explain each run's test fold (IG).")
_IG_STEPS = flags.DEFINE_integer("ig_steps", 50, "IG steps (the paper: 50).")
_IG_BASELINES = flags.DEFINE_integer("ig_baselines", 10, "IG uniform baselines (the paper: 10).")
_EXPLAIN_IMAGES = flags.DEFINE_integer("explain_images", 0, "Images per test fold (0 = all).")
_PER_DEVICE = flags.DEFINE_integer("per_device_batch", 1, "Images per device per IG step.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap_samples", 2000, "Paired bootstrap replicates.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the bootstrap.")
_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Keep compiled programs in WORKDIR/jax_cache (runs share them)."
)
distributed.define_flags()
flags.mark_flags_as_required(["workdir"])

# Config fields the study sets per cell, with the flag that sets them.
_STUDY_FIELDS = {
    "model.name": "--models",
    "data.variant": "--variants",
    "data.fold": "--run_folds or --only",
    "data.num_folds": "--folds",
    "data.split_scheme": "(always kfold)",
    "init_from": "--init_from",
}


def _refuse_study_fields(argv: list[str]) -> None:
    from cervix_jax.study import StudyError

    for arg in argv:
        field = arg.split("=")[0].removeprefix("--config.")
        if arg.startswith("--config.") and field in _STUDY_FIELDS:
            raise StudyError(
                f"{arg}: the study sets config.{field} per cell; use {_STUDY_FIELDS[field]}."
            )


# Flags that describe the grid to run; --collect reads the grid saved in WORKDIR instead.
_GRID_FLAGS = (
    "config",
    "models",
    "variants",
    "folds",
    "run_folds",
    "only",
    "init_from",
    "pretrained_models",
    "explain",
    "ig_steps",
    "ig_baselines",
    "explain_images",
    "per_device_batch",
)


def _collect_spec():
    """The saved grid, with this command's --bootstrap_samples/--seed when given."""
    import dataclasses

    from cervix_jax import study

    given = [f"--{n}" for n in _GRID_FLAGS if FLAGS[n].present]
    given += [a.split("=")[0] for a in sys.argv if a.startswith("--config.")]
    if given:
        raise study.StudyError(
            f"--collect assembles the grid saved in {_WORKDIR.value}; drop {', '.join(given)}."
        )
    spec = study.load_spec(_WORKDIR.value)
    changes = {n: FLAGS[n].value for n in ("bootstrap_samples", "seed") if FLAGS[n].present}
    if changes.get("bootstrap_samples", 100) < 100:
        raise study.StudyError(
            f"--bootstrap_samples={changes['bootstrap_samples']}: must be >= 100."
        )
    return dataclasses.replace(spec, **changes)


def _spec():
    from cervix_jax import study

    if _COLLECT.value:
        return _collect_spec()
    explain = study.ExplainSpec(
        enabled=_EXPLAIN.value,
        steps=_IG_STEPS.value,
        num_baselines=_IG_BASELINES.value,
        num_images=_EXPLAIN_IMAGES.value,
        per_device_batch=_PER_DEVICE.value,
    )
    return study.make_spec(
        models_text=_MODELS.value,
        variants_text=_VARIANTS.value,
        num_folds=_FOLDS.value,
        run_folds_text=_RUN_FOLDS.value,
        init_from_text=_INIT_FROM.value,
        pretrained_text=_PRETRAINED.value,
        explain=explain,
        bootstrap_samples=_BOOTSTRAP.value,
        seed=_SEED.value,
    )


def _summary(result: dict) -> str:
    from cervix_jax.study import format_interval

    lines = ["accuracy, mean ± sd [95% CI] over folds:"]
    for g in result["groups"]:
        stats = g["summary"]["accuracy"] if g["summary"] else {}
        lines.append(f"  {g['model']:<22} {g['variant']:<8} {format_interval(stats)}")
    if result["missing"]:
        lines.append(f"missing or unfinished: {', '.join(result['missing'])}")
    lines.append(f"-> {os.path.join(_WORKDIR.value, 'study.html')}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    from absl import logging

    logging.set_verbosity(logging.ERROR)  # Orbax narrates every read-only restore at WARNING
    from cervix_jax import study, train

    with train.reported_as_exit():  # user errors, Ctrl-C and SIGTERM: one line, an exit code
        try:
            if os.path.isfile(_WORKDIR.value):
                raise study.StudyError(f"--workdir={_WORKDIR.value} is a file; give a folder.")
            _refuse_study_fields(sys.argv)
            spec = _spec()
            only = study.parse_only(_ONLY.value, spec) if _ONLY.value else None
            if not _COLLECT.value:
                distributed.initialize_from_flags()  # first: the checks count every device
                study.check_plan(
                    FLAGS.config, spec, _WORKDIR.value, [only] if only else spec.cells()
                )
                if _CACHE.value:
                    runtime.enable_compilation_cache(os.path.join(_WORKDIR.value, "jax_cache"))
                study.run_grid(FLAGS.config, spec, _WORKDIR.value, only)
            import jax

            if only is not None or jax.process_index() != 0:
                return
            result = study.collect(_WORKDIR.value, spec)
            study.write_study(_WORKDIR.value, result)
        except study.StudyError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)
    print(_summary(result), flush=True)


if __name__ == "__main__":
    app.run(distributed.exit_at_once_on_failure(main), flags_parser=flag_parsing.parse_config_flags)
