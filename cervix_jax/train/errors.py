"""The training wing's user-facing error, and the errors entry points print without a
traceback."""

from cervix_jax.data import DataError, ManualDownloadError


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite loss, inconsistent workdir); the message says why and
    what to do, so entry points print it without a traceback."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is a complete explanation for the user (main.py and the
    tools print them without a traceback): ours, and the data wing's ``DataError`` (which
    includes ``ManualDownloadError``, SIPaKMeD missing: download instructions and the option)."""
    return (TrainingError, DataError, ManualDownloadError)
