"""The study's user-facing error."""


class StudyError(RuntimeError):
    """A study cannot go on as asked (a bad flag, a grid cell that does not exist, results that
    do not fit together); the message says why and what to do, so tools print it without a
    traceback."""
