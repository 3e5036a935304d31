"""How a training run stops on a signal.

- SIGTERM (what schedulers send some time before they kill a job): the run finishes the step it
  is in, saves a checkpoint at that step boundary (mid-epoch if need be: the data position and
  the epoch's running sums go with it, so the resumed run ends exactly as an uninterrupted one)
  and leaves with exit code 143 (128 + SIGTERM, what a shell reports for a job stopped by it).
- SIGINT (Ctrl-C): the step in flight is abandoned, a checkpoint being written is finished, and
  the run leaves with exit code 130 and one line naming the step it reached and the latest
  checkpoint, from which the same command resumes. While the loop takes a batch from grain's
  iterator, a Ctrl-C is held until the batch is out (`next_holding_ctrl_c`; a second Ctrl-C
  does not wait): grain loses the shared memory of a batch interrupted mid-handover, which
  Python reports at exit as leaked shared_memory objects.

Grain's worker processes (`cervix_jax.data.train_iterator`) ignore both signals: a terminal's
Ctrl-C or a scheduler's SIGTERM reaches the whole process group, and the workers are stopped by
the main process when it closes its iterator instead of dying with tracebacks of their own.

In a multi-process run the processes must agree on the step they stop at (saving is
collective), so they compare their SIGTERM flags at the steps where a progress line is due,
and at the end of each epoch.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

T = TypeVar("T")


class StopRequests:
    """Context manager around a training loop: while it is active, SIGTERM asks the loop to
    stop at the next step boundary (`should_stop`) instead of killing the process.

    Attributes:
      requested: a SIGTERM arrived (in this process).
      last_step: the last step the loop completed (for the line printed on Ctrl-C).
    """

    def __init__(self):
        self.requested = False
        self.last_step: int | None = None
        self._previous = None

    def __enter__(self) -> StopRequests:
        # Python runs signal handlers in the main thread only (and can install them only there).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._request)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _request(self, signum, frame) -> None:
        del signum, frame
        self.requested = True

    def should_stop(self, sync_point: bool) -> bool:
        """Whether to stop now. One process: whenever a SIGTERM has arrived. Several: only at a
        ``sync_point`` (a step every process treats as one), where the processes agree (any
        process's request stops all)."""
        if jax.process_count() == 1:
            return self.requested
        if not sync_point:
            return False
        flags = multihost_utils.process_allgather(np.int32(self.requested))
        return bool(np.any(flags))


def next_holding_ctrl_c(iterator: Iterator[T]) -> T:
    """``next(iterator)``, with a Ctrl-C that arrives meanwhile raised (as KeyboardInterrupt)
    only once it has returned; a second Ctrl-C raises at once. Left as is where Ctrl-C does not
    raise KeyboardInterrupt (another handler, or outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return next(iterator)
    pressed = []

    def hold(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    if previous is not signal.default_int_handler:
        signal.signal(signal.SIGINT, previous)
        return next(iterator)
    try:
        item = next(iterator)
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        del item  # not kept alive by the traceback (grain frees a batch's memory on release)
        raise KeyboardInterrupt
    return item
