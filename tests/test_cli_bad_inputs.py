"""Every command-line face on a table of bad inputs: each must exit non-zero with one short
message naming the field or file, print no traceback, and leave every folder it was given (and
the folder around them) exactly as it was.

To add a row: append a `Row` to `ROWS` (or to a tool's own list) with the command (``{tmp}``,
``{run}``, ``{file}``, ``{folder}``, ``{garbage}`` and ``{readonly}`` are filled in, see
`_Paths`; ``{tmp}`` also holds the files of `_user_files`), the text the message must contain,
and, for absl's own flag errors, ``lines=2`` (absl adds one usage line: "Pass --helpshort or
--helpfull to see help on flags.").

Every row fails in validation, before any model is restored or compiled (a few seconds each:
most of it is Python importing JAX).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.tree_snapshot import snapshot

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
# The trained run of `tiny_trained_workdir` (conftest.py), as command-line overrides.
TINY_RUN = (
    "--config=configs/resnet50.py",
    "--config.model.name=resnet50_tiny",
    "--config.data.synthetic=True",
    "--config.data.synthetic_images_per_class=4",
    "--config.data.num_workers=0",
    "--config.batch_size=8",
    "--config.eval_batch_size=8",
    "--config.num_epochs=1",
)
DEMO = ("--config=configs/resnet50.py:demo", "--workdir={tmp}/w")
UNKNOWN_KEY = 'unknown config key --config.optim.lrr: Did you mean "lr"'


@dataclasses.dataclass(frozen=True)
class Row:
    """One bad input: ``script`` (relative to the repository) run with ``args``; the message
    must contain ``expect``; ``lines``: the most stderr lines allowed."""

    id: str
    script: str
    args: tuple[str, ...]
    expect: str
    lines: int = 1


# One row per bad input reads better than the formatter's layout.
# fmt: off
MAIN_ROWS = [
    Row("config-file-missing", "main.py", ("--config=configs/nope.py", "--workdir={tmp}/w"),
        "configs/nope.py"),
    Row("train-without-config", "main.py", ("--workdir={tmp}/w",), "--config is required"),
    Row("unknown-key", "main.py", (*DEMO, "--config.optim.lrr=1"), UNKNOWN_KEY),
    Row("batch-size-0", "main.py", (*DEMO, "--config.batch_size=0"), "config.batch_size=0"),
    Row("batch-size-negative", "main.py", (*DEMO, "--config.batch_size=-8"),
        "config.batch_size=-8"),
    Row("batch-size-not-divisible", "main.py", (*DEMO, "--config.batch_size=6"),
        "config.batch_size=6: must be a positive multiple of the number of devices (4)"),
    Row("image-size-0", "main.py", (*DEMO, "--config.data.image_size=0"),
        "config.data.image_size=0"),
    Row("unknown-model", "main.py", (*DEMO, "--config.model.name=resnet51"),
        "config.model.name='resnet51'"),
    Row("fold-out-of-range", "main.py", (*DEMO, "--config.data.fold=5"), "config.data.fold=5"),
    Row("num-epochs-0", "main.py", (*DEMO, "--config.num_epochs=0"), "config.num_epochs=0"),
    Row("workdir-is-a-file", "main.py", ("--config=configs/resnet50.py:demo", "--workdir={file}"),
        "is a file"),
    Row("read-only-data-dir", "main.py",
        ("--config=configs/resnet50.py", "--workdir={tmp}/w",
         "--config.data.tfds_data_dir={readonly}/tfds", "--config.data.manual_dir={folder}"),
        "config.data.tfds_data_dir="),
    Row("eval-not-a-workdir", "main.py", ("--mode=eval", "--workdir={tmp}/nowhere"),
        "not a training workdir"),
    Row("eval-not-a-workdir-with-config", "main.py",
        ("--mode=eval", "--config=configs/rca.py:demo", "--workdir={tmp}/nowhere"),
        "not a training workdir"),
    Row("eval-other-image-size", "main.py",
        ("--mode=eval", "--workdir={run}", *TINY_RUN, "--config.data.image_size=64"),
        "data.image_size: 32 (saved) -> 64 (now)"),
]
ATTRIBUTE_ROWS = [
    Row("not-a-workdir", "tools/attribute.py", ("--workdir={tmp}/nowhere",),
        "not a training workdir"),
    Row("target-out-of-range", "tools/attribute.py", ("--workdir={run}", "--target=7"),
        "--target=7"),
    Row("num-images-negative", "tools/attribute.py", ("--workdir={run}", "--num_images=-1"),
        "--num_images=-1"),
    Row("out-is-a-file", "tools/attribute.py", ("--workdir={run}", "--out={file}"),
        "is a file"),
    Row("steps-0", "tools/attribute.py", ("--workdir={run}", "--steps=0"), "--steps=0"),
    Row("chunk-size-negative", "tools/attribute.py", ("--workdir={run}", "--chunk_size=-1"),
        "--chunk_size=-1"),
    Row("num-baselines-0", "tools/attribute.py", ("--workdir={run}", "--num_baselines=0"),
        "--num_baselines=0"),
    Row("per-device-batch-0", "tools/attribute.py", ("--workdir={run}", "--per_device_batch=0"),
        "--per_device_batch=0"),
    Row("deletion-steps-0", "tools/attribute.py", ("--workdir={run}", "--deletion_steps=0"),
        "--deletion_steps=0"),
    Row("which-missing-step", "tools/attribute.py", ("--workdir={run}", "--which=999"),
        "--which=999"),
    Row("unknown-method", "tools/attribute.py", ("--workdir={run}", "--method=shap"),
        "--method=shap: expected one or more of ig, blur_ig"),
    Row("method-twice", "tools/attribute.py", ("--workdir={run}", "--method=ig,gradcam,ig"),
        "--method=ig,gradcam,ig: expected"),
    Row("evaluate-unknown", "tools/attribute.py", ("--workdir={run}", "--evaluate=unknown"),
        "--evaluate='unknown': unknown ['unknown']; expected 'all' or a comma list"),
    Row("noise-tunnel-bogus", "tools/attribute.py", ("--workdir={run}", "--noise_tunnel=bogus"),
        "--noise_tunnel", lines=2),
    Row("fill-bogus", "tools/attribute.py", ("--workdir={run}", "--fill=bogus"), "--fill",
        lines=2),
    Row("noise-samples-0", "tools/attribute.py", ("--workdir={run}", "--noise_samples=0"),
        "--noise_samples=0: expected at least 1"),
    Row("perturbation-samples-negative", "tools/attribute.py",
        ("--workdir={run}", "--perturbation_samples=-2"),
        "--perturbation_samples=-2: expected at least 1"),
    Row("smoothgrad-in-a-tunnel", "tools/attribute.py",
        ("--workdir={run}", "--method=smoothgrad", "--noise_tunnel=vargrad"),
        "--method='smoothgrad' is the gradient in a smoothgrad tunnel already"),
    Row("images-missing", "tools/attribute.py", ("--workdir={run}", "--images={tmp}/gone.png"),
        "--images: {tmp}/gone.png: no image files"),
    Row("images-not-an-image", "tools/attribute.py",
        ("--workdir={run}", "--images={tmp}/notes.png"), "notes.png: cannot be read as an image"),
    Row("images-target-label", "tools/attribute.py",
        ("--workdir={run}", "--images={tmp}/images", "--target=label"),
        "--target=label explains the true class"),
]
PREDICT = ("--workdir={run}", "--images={tmp}/images")
PREDICT_ROWS = [
    Row("not-a-workdir", "tools/predict.py",
        ("--workdir={tmp}/nowhere", "--images={tmp}/images", "--out={tmp}/p.csv"),
        "not a training workdir"),
    Row("workdir-without-checkpoints", "tools/predict.py",
        ("--workdir={tmp}", "--images={tmp}/images", "--out={tmp}/p.csv"),
        "not a training workdir (no config.json and no checkpoints)"),
    Row("images-missing", "tools/predict.py",
        ("--workdir={run}", "--images={tmp}/gone.png", "--out={tmp}/p.csv"), "no image files"),
    Row("not-an-image", "tools/predict.py",
        ("--workdir={run}", "--images={tmp}/notes.png", "--out={tmp}/p.csv"),
        "notes.png: cannot be read as an image"),
    Row("image-too-small", "tools/predict.py",
        ("--workdir={run}", "--images={tmp}/strip.png", "--out={tmp}/p.csv"),
        "strip.png: 40x8 pixels is too small to crop"),
    Row("which-missing-step", "tools/predict.py", (*PREDICT, "--out={tmp}/p.csv", "--which=999"),
        "--which=999: no checkpoint at that step"),
    Row("which-not-a-step", "tools/predict.py", (*PREDICT, "--out={tmp}/p.csv", "--which=bets"),
        "--which='bets': expected 'best', 'latest' or a step number"),
    Row("out-exists", "tools/predict.py", (*PREDICT, "--out={tmp}/old.csv"),
        "old.csv exists; pass --force"),
    Row("out-suffix", "tools/predict.py", (*PREDICT, "--out={tmp}/p.txt"),
        "expected a file ending in .csv or .json"),
    Row("batch-size-negative", "tools/predict.py",
        (*PREDICT, "--out={tmp}/p.csv", "--batch_size=-1"), "--batch_size=-1"),
]
EMBED_ROWS = [
    Row("no-split-no-images", "tools/embed.py", ("--workdir={run}", "--out={tmp}/e.npz"),
        "pass exactly one of --split"),
    Row("not-a-workdir", "tools/embed.py",
        ("--workdir={tmp}/nowhere", "--split=test", "--out={tmp}/e.npz"), "not a training workdir"),
    Row("images-missing", "tools/embed.py",
        ("--workdir={run}", "--images={tmp}/gone.png", "--out={tmp}/e.npz"), "no image files"),
    Row("not-an-image", "tools/embed.py",
        ("--workdir={run}", "--images={tmp}/notes.png", "--out={tmp}/e.npz"),
        "notes.png: cannot be read as an image"),
    Row("which-missing-step", "tools/embed.py",
        ("--workdir={run}", "--split=test", "--out={tmp}/e.npz", "--which=999"),
        "--which=999: no checkpoint at that step"),
    Row("out-exists", "tools/embed.py", ("--workdir={run}", "--split=test", "--out={tmp}/old.npz"),
        "old.npz exists; pass --force"),
]
CONVERT_ROWS = [
    Row("src-missing", "tools/convert_torchvision.py",
        ("--arch=densenet121", "--src={tmp}/missing.pth", "--out={tmp}/out"), "missing.pth"),
    Row("src-unknown-format", "tools/convert_torchvision.py",
        ("--arch=densenet121", "--src={file}", "--out={tmp}/out"), "unknown format '.txt'"),
    Row("src-garbage-header", "tools/convert_torchvision.py",
        ("--arch=densenet121", "--src={garbage}", "--out={tmp}/out"), "garbage.safetensors"),
    Row("out-exists", "tools/convert_torchvision.py",
        ("--arch=densenet121", "--src={garbage}", "--out={folder}"), "exists"),
    Row("unknown-arch", "tools/convert_torchvision.py",
        ("--arch=vgg16", "--src={garbage}", "--out={tmp}/out"), "--arch", lines=2),
]
CROSS_VALIDATE_ROWS = [
    Row("config-file-missing", "tools/cross_validate.py",
        ("--config=configs/nope.py", "--workdir={tmp}/cv"), "--config"),
    Row("fold-out-of-range", "tools/cross_validate.py",
        ("--config=configs/resnet50.py:demo", "--workdir={tmp}/cv", "--folds=7"),
        "folds [7] outside [0, 5) (config.data.num_folds)"),
    Row("fold-not-a-number", "tools/cross_validate.py",
        ("--config=configs/resnet50.py:demo", "--workdir={tmp}/cv", "--folds=one"),
        "--folds=one"),
    Row("batch-size-0", "tools/cross_validate.py",
        ("--config=configs/resnet50.py:demo", "--workdir={tmp}/cv", "--config.batch_size=0"),
        "config.batch_size=0"),
    Row("paper-split", "tools/cross_validate.py",
        ("--config=configs/resnet50.py:demo", "--workdir={tmp}/cv",
         "--config.data.split_scheme=paper"), "config.data.split_scheme='paper'"),
    Row("workdir-is-a-file", "tools/cross_validate.py",
        ("--config=configs/resnet50.py:demo", "--workdir={file}"), "is a file"),
    Row("unknown-key", "tools/cross_validate.py",
        ("--config=configs/resnet50.py:demo", "--workdir={tmp}/cv", "--config.optim.lrr=1"),
        UNKNOWN_KEY),
]
STUDY = ("--workdir={tmp}/study",)
STUDY_ROWS = [
    Row("unknown-model", "tools/study.py", (*STUDY, "--models=resnet50,vgg"),
        "--models: unknown ['vgg']"),
    Row("unknown-variant", "tools/study.py", (*STUDY, "--variants=full,blurred"),
        "--variants: unknown ['blurred']"),
    Row("folds-2", "tools/study.py", (*STUDY, "--folds=2"), "--folds=2: K-fold needs K >= 3"),
    Row("run-folds-out-of-range", "tools/study.py", (*STUDY, "--run_folds=0,7"),
        "--run_folds=0,7: folds are 0..4"),
    Row("field-the-study-sets", "tools/study.py", (*STUDY, "--config.model.name=resnet50_tiny"),
        "use --models"),
    Row("only-not-in-grid", "tools/study.py", (*STUDY, "--only=resnet50/full/7"),
        "--only=resnet50/full/7: not in the grid"),
    Row("collect-nothing", "tools/study.py", (*STUDY, "--collect"), "holds no study"),
    Row("collect-with-grid-flags", "tools/study.py",
        (*STUDY, "--collect", "--models=resnet50", "--config.num_epochs=2"),
        "drop --models, --config"),
    Row("unknown-key", "tools/study.py", (*STUDY, "--config.optim.lrr=1"), UNKNOWN_KEY),
    Row("unknown-key-of-a-config", "tools/study.py",
        (*STUDY, "--config=configs/rca.py", "--config.data.nope=1"),
        "unknown config key --config.data.nope"),
    Row("batch-size-0", "tools/study.py", (*STUDY, "--config.batch_size=0"),
        "cell resnet50/full/0: config.batch_size=0"),
    Row("workdir-is-a-file", "tools/study.py", ("--workdir={file}",), "is a file"),
]
SYNTHETIC_ROWS = [
    Row("out-holds-other-files", "tools/make_synthetic_sipakmed.py", ("--out={folder}",),
        "folder"),
    Row("images-per-class-0", "tools/make_synthetic_sipakmed.py",
        ("--out={tmp}/raw", "--images_per_class=0"), "--images_per_class=0"),
    Row("width-0", "tools/make_synthetic_sipakmed.py", ("--out={tmp}/raw", "--width=0"),
        "--width=0"),
]
LAUNCH_ROWS = [
    Row("num-processes-0", "tools/launch_local.py", ("--num_processes=0", "--", "main.py"),
        "num_processes=0"),
    Row("no-command", "tools/launch_local.py", ("--num_processes=2",), "Nothing to launch"),
]
# fmt: on
ROWS = (
    MAIN_ROWS
    + ATTRIBUTE_ROWS
    + PREDICT_ROWS
    + EMBED_ROWS
    + STUDY_ROWS
    + CONVERT_ROWS
    + CROSS_VALIDATE_ROWS
    + SYNTHETIC_ROWS
    + LAUNCH_ROWS
)


@dataclasses.dataclass(frozen=True)
class _Paths:
    """What a row's arguments may name: ``tmp`` (an empty-ish folder of the test), ``run`` (a
    trained workdir), ``file`` (a text file), ``folder`` (a folder holding a user's file),
    ``garbage`` (a .safetensors file with a garbage header) and ``readonly`` (a folder nothing
    can be written in)."""

    tmp: Path
    run: Path
    file: Path
    folder: Path
    garbage: Path
    readonly: Path

    def fill(self, arg: str) -> str:
        return arg.format(**{k: os.fspath(v) for k, v in dataclasses.asdict(self).items()})


def _readonly_folder(tmp: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp / "readonly"
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return folder
    # Permission bits do not stop root; a kernel file system refuses new folders to anyone.
    folder = Path("/sys")
    if not folder.is_dir() or _can_mkdir(folder):
        pytest.skip("no read-only folder for root on this machine")
    return folder


def _can_mkdir(folder: Path) -> bool:
    try:
        (folder / "cervix_jax_probe").mkdir()
    except OSError:
        return False
    (folder / "cervix_jax_probe").rmdir()
    return True


def _user_files(tmp: Path) -> None:
    """A user's files in ``tmp``: ``images/fine.png`` (an image a model can read),
    ``notes.png`` (text under an image's name), ``strip.png`` (an image 8 pixels high, too
    small), ``old.csv`` and ``old.npz`` (earlier outputs)."""
    (tmp / "images").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp / "images" / "fine.png")
    (tmp / "notes.png").write_text("not an image")
    Image.fromarray(np.zeros((8, 40, 3), np.uint8)).save(tmp / "strip.png")
    (tmp / "old.csv").write_text("keep me\n")
    np.savez(tmp / "old.npz", features=np.zeros((1, 2)))


@pytest.fixture
def paths(tmp_path, tiny_trained_workdir) -> _Paths:
    tmp = tmp_path / "area"
    tmp.mkdir()
    (tmp / "notes.txt").write_text("a user's file\n")
    _user_files(tmp)
    folder = tmp / "user_folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("do not touch\n")
    garbage = tmp / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    return _Paths(
        tmp=tmp,
        run=Path(tiny_trained_workdir),
        file=tmp / "notes.txt",
        folder=folder,
        garbage=garbage,
        readonly=_readonly_folder(tmp_path),
    )


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{Path(r.script).stem}:{r.id}")
def test_bad_input_gives_one_line_and_changes_nothing(row: Row, paths: _Paths):
    watched = (paths.tmp, paths.run)
    before = [snapshot(folder) for folder in watched]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "4"}
    command = [sys.executable, row.script, *(paths.fill(a) for a in row.args)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    shown = f"exit {done.returncode}\nstderr:\n{done.stderr[-3000:]}\nstdout:\n{done.stdout[-800:]}"
    assert done.returncode != 0, shown
    assert "Traceback" not in done.stderr + done.stdout, shown
    assert 1 <= len(lines) <= row.lines, shown
    assert paths.fill(row.expect) in lines[0], shown
    assert [snapshot(folder) for folder in watched] == before, shown
