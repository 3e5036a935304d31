"""The bench/ scripts run end to end at toy sizes and print the JSON the docs promise.

Speed is never asserted here (bench/ and docs/performance.md hold the real-size numbers); what
is checked is that the scripts keep working, their records carry the documented fields, and the
IG chunk loops agree on the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMON_FIELDS = {"model", "image_size", "batch_size", "devices", "dtype", "images_per_s"}
COMMON_FIELDS |= {"images_per_s_min", "images_per_s_max", "spread", "repeats", "peak_rss_mb"}
COMMON_FIELDS |= {"compile_s"}


YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce"


def _run(script: str, *args: str) -> list[dict]:
    # Without this process's XLA_FLAGS: each script sets them itself (runtime.setup).
    unset = ("XLA_FLAGS", "CERVIX_JAX_DEFAULT_XLA_FLAGS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["JAX_NUM_CPU_DEVICES"] = "1"
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", script), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for record in records:
        assert "error" not in record, record["error"]
    return records


def test_train_step_bench_prints_one_record_per_model():
    records = _run(
        "train_step.py",
        "--model=resnet50_tiny,densenet121_tiny",
        "--image_size=32",
        "--batch_size=4",
        "--steps=1",
        "--repeats=2",
    )
    assert [r["model"] for r in records] == ["resnet50_tiny", "densenet121_tiny"]
    for r in records:
        assert COMMON_FIELDS <= set(r)
        assert (r["image_size"], r["batch_size"], r["repeats"]) == (32, 4, 2)
        assert r["images_per_s_min"] <= r["images_per_s"] <= r["images_per_s_max"]
        assert r["peak_rss_mb"] > 0 and r["compile_s"] > 0
        assert r["xla_flags"] == YNN_FLAG


def test_attribution_bench_chunk_loops_agree():
    records = _run(
        "attribution.py",
        "--model=resnet50_tiny",
        "--image_size=32",
        "--steps=6",
        "--chunk_sizes=2,6",
        "--chunk_loops=scan,unrolled",
        "--repeats=1",
    )
    assert [(r["chunk_loop"], r["chunk_size"]) for r in records] == [
        ("scan", 2),
        ("scan", 6),
        ("unrolled", 2),
        ("unrolled", 6),
    ]
    for r in records:
        assert COMMON_FIELDS | {"steps", "method", "completeness_error", "ynn"} <= set(r)
        assert r["ynn"] is True
    errors = [r["completeness_error"] for r in records]
    # Same integrand, same points: only the summation order differs.
    assert max(errors) - min(errors) <= 1e-4 * max(1.0, max(errors))


def test_evaluation_bench_times_the_parts_of_base():
    records = _run(
        "evaluation.py",
        "--model=resnet50_tiny",
        "--image_size=32",
        "--steps=5",
        "--chunk_size=3",
        "--evaluations=parts",
        "--deletion_steps=2",
        "--repeats=1",
    )
    assert [r.get("part") for r in records] == ["method", "input_gradient", "deletion_insertion"]
    for r in records:
        assert COMMON_FIELDS <= set(r) and r["evaluate"] == "parts" and r["repeats"] == 1
        assert r["chunk_size"] == 3 and r["over_base_s_per_image"] is None
        assert r["s_per_image"] > 0 and r["first_call_s"] >= r["compile_s"] > 0


def test_input_pipeline_bench_times_the_training_iterator():
    (r,) = _run(
        "input_pipeline.py",
        "--images_per_class=2",
        "--image_size=32",
        "--batch_size=4",
        "--num_workers=0",
        "--batches=2",
        "--repeats=2",
    )
    assert COMMON_FIELDS | {"device_augment_ms_per_batch", "peak_rss_children_mb"} <= set(r)
    assert (r["image_size"], r["batch_size"], r["repeats"], r["dtype"]) == (32, 4, 2, "uint8")
    assert r["images_per_s_min"] <= r["images_per_s"] <= r["images_per_s_max"]
    assert r["device_augment_ms_per_batch"] > 0 and r["xla_flags"] == YNN_FLAG


def test_evaluation_bench_prints_one_record_per_configuration():
    """One cheap configuration (a compile of the whole suite takes a minute on 2 cores; the
    suite itself runs in tests/explain/test_batch.py)."""
    (record,) = _run(
        "evaluation.py",
        "--model=resnet50_tiny",
        "--image_size=32",
        "--steps=2",
        "--evaluations=complexity",
        "--deletion_steps=2",
    )
    assert COMMON_FIELDS <= set(record)
    assert (record["evaluate"], record["method"], record["steps"]) == ("complexity", "ig", 2)
    assert record["chunk_size"] == 2  # automatic: every point in one chunk
    assert record["randomization_stages"] is None  # not evaluated
    assert record["s_per_image"] > 0 and record["over_base_s_per_image"] is None  # no base run
    assert record["first_call_s"] >= record["compile_s"] > 0
