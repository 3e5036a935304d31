"""Shared helpers of the bench/ scripts: timing summaries, peak RSS, JSON lines, subprocesses.

Every script prints one JSON line per measurement with at least ``model``, ``image_size``,
``batch_size``, ``devices``, ``dtype``, ``images_per_s`` (median over the timed repeats),
``images_per_s_min``/``_max``, ``spread`` ((max - min) / median of the repeat times),
``repeats``, ``peak_rss_mb`` and ``compile_s``. Measurements that must own their peak RSS run in
a subprocess of their own (``run_isolated``): the peak is a per-process high-water mark.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size of this process (or of its largest child) in MiB.

    For this process, ``VmHWM`` of ``/proc/self/status`` where it exists: Linux carries
    ``ru_maxrss`` across ``fork``/``exec``, so a measurement started from a large parent would
    report the parent's peak; ``VmHWM`` belongs to the process's own address space.
    """
    if who == resource.RUSAGE_SELF:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024.0, 1)  # kB
        except OSError:
            pass
    return round(resource.getrusage(who).ru_maxrss / 1024.0, 1)  # KiB on Linux


def time_repeats(call: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls; ``call`` must block until its work is done."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def summarize(times: Sequence[float], images_per_call: float) -> dict:
    """images/second median, min, max and relative spread of a list of call times."""
    median = statistics.median(times)
    return {
        "images_per_s": round(images_per_call / median, 3),
        "images_per_s_min": round(images_per_call / max(times), 3),
        "images_per_s_max": round(images_per_call / min(times), 3),
        "spread": round((max(times) - min(times)) / median, 4),
        "repeats": len(times),
    }


def environment() -> dict:
    """Devices and flags the measurement ran with (call after jax is imported)."""
    import jax

    return {
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "device_kind": str(jax.devices()[0].device_kind),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def emit(record: dict) -> None:
    """Prints one JSON line, flushed (the output of every bench script)."""
    print(json.dumps(record), flush=True)


def run_isolated(script: str, args: Sequence[str], env: dict | None = None) -> dict:
    """Runs ``python script *args`` and returns its last JSON line (or an ``error`` record).

    One process per measurement, so peak RSS and compilation caches are that measurement's own.
    ``env`` entries are added to this process's environment (e.g. to turn XLA flags off).
    """
    full_env = dict(os.environ, **(env or {}))
    done = subprocess.run(
        [sys.executable, os.path.abspath(script), *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        return {"error": f"{os.path.basename(script)} {' '.join(args)}: {tail[0]}"}
    return json.loads(lines[-1])
