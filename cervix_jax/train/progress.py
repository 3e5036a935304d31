"""What a run prints while it trains: progress lines on process 0, throughput and time left;
and the one-line counter of the tools that go over images (`ProgressLine`)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

from cervix_jax.train.workdir import is_writer


def log(msg: str) -> None:
    """Prints ``msg`` on process 0 only."""
    if is_writer():
        print(msg, flush=True)


def warn(msg: str) -> None:
    """Prints ``warning: msg`` on stderr, on process 0 only."""
    if is_writer():
        print(f"warning: {msg}", file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    """``'1h02m05s'``, or ``'2m05s'`` under an hour; negative durations count as 0."""
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ProgressMeter:
    """The progress lines of a run and the timing state behind them.

    A window is the steps between two progress lines. The first window of a process holds the
    compilation of the step: its line says so and its time is left out of the step rate that
    the time left (ETA) is computed from. Created when training starts (the run's clock).

    Args:
      num_epochs, total_steps: of the whole run, for ``epoch e/E step s/S``.
      batch_size: global batch size (images per step).
      start_step: the step this process starts at (0, or the restored checkpoint's).
      clock: seconds, monotonic (a fake one in tests).
      emit: where the lines go (default: `log`, process 0's stdout).
    """

    def __init__(
        self,
        *,
        num_epochs: int,
        total_steps: int,
        batch_size: int,
        start_step: int,
        clock: Callable[[], float] = time.perf_counter,
        emit: Callable[[str], None] = log,
    ):
        self._num_epochs = num_epochs
        self._total_steps = total_steps
        self._batch_size = batch_size
        self._start_step = start_step
        self._clock = clock
        self._emit = emit
        self._run_start = self._epoch_start = self._window_start = clock()
        self._window_step = start_step
        self._timed_steps = 0
        self._timed_seconds = 0.0

    def begin_epoch(self, step: int) -> None:
        """Starts the epoch's clock and a window at ``step`` (steps done so far)."""
        self._epoch_start = self._window_start = self._clock()
        self._window_step = step

    def log_step(self, epoch: int, step: int, loss: float, accuracy: float) -> str:
        """Emits (and returns) the line for the window ending at ``step``; starts the next one.

        ``loss``: of the last step; ``accuracy``: over the epoch so far.
        """
        elapsed = self._clock() - self._window_start
        steps = step - self._window_step
        compiling = self._window_step == self._start_step
        if not compiling:
            self._timed_steps += steps
            self._timed_seconds += elapsed
        images_per_second = steps * self._batch_size / max(elapsed, 1e-9)
        rate = self._timed_steps / self._timed_seconds if self._timed_seconds else None
        eta = (self._total_steps - step) / rate if rate else float("nan")
        line = (
            f"epoch {epoch}/{self._num_epochs} step {step}/{self._total_steps} "
            f"loss {loss:.4f} acc {accuracy:.3f} {images_per_second:.1f} img/s"
            f"{' (incl. compilation)' if compiling else ''} "
            f"ETA {format_duration(eta) if math.isfinite(eta) else '?'}"
        )
        self._emit(line)
        self._window_start, self._window_step = self._clock(), step
        return line

    def epoch_seconds(self) -> float:
        """Seconds since `begin_epoch`."""
        return self._clock() - self._epoch_start

    def log_epoch(self, record: dict) -> str:
        """Emits (and returns) the summary line of an epoch record."""
        line = (
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.3f} | val loss {record['val_loss']:.4f} "
            f"acc {record['val_accuracy']:.3f} | {record['epoch_seconds']:.1f}s"
        )
        self._emit(line)
        return line

    def elapsed(self) -> float:
        """Seconds since the meter was created."""
        return self._clock() - self._run_start


class ProgressLine:
    """``<label>: done/total images, rate/s``, rewritten in place on stderr.

    The progress of the tools that go over images (attribution, prediction, embeddings);
    ``enabled=False`` (other processes, tests) prints nothing.
    """

    def __init__(self, label: str, total: int, enabled: bool = True):
        self.label, self.total, self.enabled = label, total, enabled
        self.done, self.start = 0, time.perf_counter()

    def add(self, count: int) -> None:
        self.done += count
        if self.enabled:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            sys.stderr.write(f"\r{self.label}: {self.done}/{self.total} images, {rate:.2f}/s ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
