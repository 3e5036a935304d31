"""cervix_jax.runtime.setup(): the XLA flag is added, a user's value kept, the opt-out honoured,
importing the package touches nothing, and a call after JAX started its backend warns.

Each case runs in a fresh Python: this test process set its flags (tests/conftest.py) and
started its backend long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cervix_jax import runtime

FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    unset = ("XLA_FLAGS", runtime.OPT_OUT_VARIABLE)
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    environ.update(env, JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


SETUP_THEN_PRINT = (
    "import os; from cervix_jax import runtime; runtime.setup(); "
    "print(repr(os.environ.get('XLA_FLAGS')))"
)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, FLAG),  # absent: added
        ({"XLA_FLAGS": "--xla_dump_to=/tmp/d"}, f"--xla_dump_to=/tmp/d {FLAG}"),  # appended
        # The user's own setting of the flag wins, whatever its value.
        (
            {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"},
            "--xla_cpu_experimental_ynn_fusion_type=dot",
        ),
        ({runtime.OPT_OUT_VARIABLE: "0"}, None),  # opt-out: not even created
        ({runtime.OPT_OUT_VARIABLE: "0", "XLA_FLAGS": "--xla_dump_to=/d"}, "--xla_dump_to=/d"),
        ({runtime.OPT_OUT_VARIABLE: "1"}, FLAG),  # only "0" opts out
    ],
)
def test_setup_sets_xla_flags(env, expected):
    assert _python(SETUP_THEN_PRINT, **env).stdout.strip() == repr(expected)


def test_default_xla_flags_is_what_setup_sets_and_is_idempotent():
    assert runtime.default_xla_flags({}) == runtime.YNN_FLAG == FLAG
    once = runtime.default_xla_flags({"XLA_FLAGS": "--a"})
    assert once == f"--a {FLAG}"
    assert runtime.default_xla_flags({"XLA_FLAGS": once}) == once


def test_importing_the_package_leaves_xla_flags_alone():
    code = (
        "import os, cervix_jax, cervix_jax.data, cervix_jax.models, cervix_jax.train, "
        "cervix_jax.explain; print(repr(os.environ.get('XLA_FLAGS')))"
    )
    assert _python(code).stdout.strip() == "None"


WARNINGS_OF_SETUP = """
import json, warnings
import jax
from cervix_jax import runtime
if {start_backend}:
    jax.devices()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    runtime.setup()
    runtime.setup()  # nothing left to change: no second warning
print(json.dumps([runtime.backend_started(), [str(w.message) for w in caught],
                  [w.category.__name__ for w in caught]]))
"""


def test_setup_warns_when_the_backend_has_started():
    started, messages, categories = json.loads(
        _python(WARNINGS_OF_SETUP.format(start_backend=True)).stdout.splitlines()[-1]
    )
    assert started and categories == ["RuntimeWarning"]
    assert "after JAX started its backend" in messages[0]


def test_setup_after_import_jax_but_before_the_backend_is_silent():
    started, messages, _ = json.loads(
        _python(WARNINGS_OF_SETUP.format(start_backend=False)).stdout.splitlines()[-1]
    )
    assert not started and messages == []


def test_no_warning_after_backend_start_when_nothing_changes():
    code = WARNINGS_OF_SETUP.format(start_backend=True)
    _, messages, _ = json.loads(_python(code, XLA_FLAGS=FLAG).stdout.splitlines()[-1])
    assert messages == []
    _, messages, _ = json.loads(
        _python(code, **{runtime.OPT_OUT_VARIABLE: "0"}).stdout.splitlines()[-1]
    )
    assert messages == []


def test_xla_reads_xla_flags_when_the_backend_starts_not_on_import():
    """What `setup`'s timing rests on: a flag set after ``import jax`` still reaches XLA (an
    unknown one aborts the backend start), one set after the backend started does not."""
    set_bogus = "os.environ['XLA_FLAGS'] = '--xla_no_such_flag_for_cervix_jax'"
    environ = dict(os.environ, JAX_PLATFORMS="cpu")
    after_import = subprocess.run(
        [sys.executable, "-c", f"import os, jax; {set_bogus}; jax.devices()"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert after_import.returncode != 0
    assert "xla_no_such_flag_for_cervix_jax" in after_import.stderr
    after_start = f"import os, jax; jax.devices(); {set_bogus}; print(jax.numpy.ones(2).sum())"
    assert _python(after_start).stdout.strip() == "2.0"
