"""The training wing's user-facing error."""


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite loss, inconsistent workdir); the message says why and
    what to do, so entry points print it without a traceback."""
