"""Exceptions whose message is a complete explanation for the user (no traceback needed)."""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing input data; the message names the file (and line) and what to do."""


class ManualDownloadError(DataError, FileNotFoundError):
    """SIPaKMeD is not prepared and its archives are not where the configuration points."""
