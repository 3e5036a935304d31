"""The training wing's user-facing errors, and how entry points report them: one line on
stderr and an exit code, never a traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from cervix_jax.data import DataError, ManualDownloadError

# Exit codes of a run stopped by a signal: 128 + the signal number, as a shell reports it.
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM (what schedulers send before killing a job)


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite loss, inconsistent workdir); the message says why and
    what to do, so entry points print it without a traceback."""


class ConfigError(TrainingError):
    """A config value a run cannot use; the message names the field (``config_checks``)."""


class Interrupted(Exception):
    """A run stopped on a signal (Ctrl-C, SIGTERM). ``str(e)`` is the one line for the user
    (where it stopped, the checkpoint to resume from); ``exit_code`` is 130 or 143."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is a complete explanation for the user (main.py and the
    tools print them without a traceback): ours, and the data wing's ``DataError`` (which
    includes ``ManualDownloadError``, SIPaKMeD missing: download instructions and the option)."""
    return (TrainingError, DataError, ManualDownloadError)


@contextlib.contextmanager
def reported_as_exit() -> Iterator[None]:
    """For entry points: `user_errors` print ``error: <message>`` and exit with 1; a run stopped
    by a signal prints its one line (`Interrupted`) and exits with 130 (Ctrl-C) or 143
    (SIGTERM); a Ctrl-C elsewhere exits with 130. Nothing prints a traceback."""
    try:
        yield
    except Interrupted as e:
        print(e, file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume.", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    except user_errors() as e:
        # Our own errors carry the full explanation; a traceback would only bury it.
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
