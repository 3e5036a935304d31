"""Command-line tools, run as scripts (``python tools/attribute.py ...``).

A package only so that tests import their functions as ``tools.<name>`` (pytest puts the
repository root on ``sys.path``); it is not installed with ``cervix_jax``.
"""
