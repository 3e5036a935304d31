"""The ``--config`` flag of the entry points that take a config file (``main.py``,
``tools/cross_validate.py``, ``tools/study.py``), with every refusal in one line.

absl answers a bad flag with its usage text, and ml_collections' ``--config.<key>=``
overrides with a traceback (an unknown key, a value of the wrong type) or, for a config file
that does not load, with nothing until the config is first used. `parse_config_flags` parses
the whole command line up front and turns each of these into ``error: <one line>`` on stderr
naming the flag, the key or the file, and exit code 2 (absl's code for a usage error).
`define_config_file` defines the flag; with a default file, ml_collections loads it and
applies the command line's overrides as the flag is defined, so their errors are caught there.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from absl import flags
from ml_collections import config_flags

_HINT = "config keys and their types: configs/default.py"


def config_arg(argv: list[str]) -> str:
    """How the command line gave the config file (``--config=...``), for messages."""
    return next((a for a in argv if a.startswith("--config=")), "--config")


def exit_usage_error(message: str) -> NoReturn:
    """Prints ``error: message`` on stderr and exits with 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _unknown_key(error: KeyError | AttributeError, argv: list[str]) -> str:
    """``unknown config key --config.a.b`` and ml_collections' suggestion, if any."""
    inner = error
    while isinstance(inner, BaseException) and inner.args:  # AttributeError(KeyError(text))
        inner = inner.args[0]
    key, *suggestion = [line.strip() for line in str(inner).splitlines() if line.strip()]
    overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
    key = key.strip("'\"")
    culprits = [o for o in overrides if key in o.split(".")[1:]]
    named = ", ".join(culprits) or f"--config.<...>.{key}"
    return f"unknown config key {named}{': ' if suggestion else ''}{' '.join(suggestion)}; {_HINT}"


def _one_line(error: Exception, argv: list[str]) -> str:
    """The message of a parsing error, on one line, naming the override or file at fault."""
    message = " ".join(str(error).replace("\\n", " ").replace("\\'", "'").split())
    if "Traceback" in message:  # an error inside the config file's get_config(): its last line
        return f"{config_arg(argv)}: {message.rsplit('Error: ', 1)[-1]}; {_HINT}"
    if isinstance(error, KeyError | AttributeError):  # an override of a key the config lacks
        return _unknown_key(error, argv)
    if isinstance(error, OSError):  # ml_collections reports a file that does not load so
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"{config_arg(argv)}: cannot load it ({lines[-1] if lines else error})"
    return f"{message}; {_HINT}" if "--config" in message else message


def define_config_file(default: str | None, help_text: str) -> None:
    """Defines ``--config`` (a ``configs/*.py[:string]`` file, locked, with ``--config.<key>=``
    overrides); a bad override of the ``default`` file exits with one line (see above)."""
    try:
        config_flags.DEFINE_config_file("config", default, help_text, lock_config=True)
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError, OSError) as e:
        exit_usage_error(_one_line(e, sys.argv))


def parse_config_flags(argv: list[str]) -> list[str]:
    """absl's parsing of ``argv``, then the config file loaded (when one is given): any
    refusal prints one line and exits with 2. For ``app.run(main, flags_parser=...)``."""
    try:
        rest = flags.FLAGS(argv)
        config = flags.FLAGS["config"].value
        if config is not None:
            config.keys()  # ml_collections defers a loading error to the config's first use
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError, OSError) as e:
        exit_usage_error(_one_line(e, argv))
    return rest
