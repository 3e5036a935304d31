"""The explain wing's error for requests it cannot serve (tools print it without a traceback)."""

from __future__ import annotations


class ExplainError(ValueError):
    """A method that does not apply to the model or the data (e.g. ``method='attention'`` on a
    network without attention, an image with more cells than ``max_cells``); the message says
    what was found and what to do."""
