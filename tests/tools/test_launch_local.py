"""tools/launch_local.py: N processes on loopback join one JAX runtime; a failure stops all."""

import io
import os
import pathlib

import psutil
import pytest

from tools import launch_local

PROBE = str(pathlib.Path(__file__).with_name("distributed_probe.py"))


def _run(extra, **kw):
    sink = io.StringIO()
    code = launch_local.launch([PROBE, *extra], sink=sink, **kw)
    return code, sink.getvalue()


def test_two_processes_form_one_four_device_runtime():
    code, out = _run([], num_processes=2, devices_per_process=2)
    assert code == 0, out
    # Rows 0, 1 from process 0 and 10, 11 from process 1: every process sees the global sum.
    assert "[p0] devices=4 sum=22" in out, out
    assert "[p1] devices=4 sum=22" in out, out


def test_a_failing_process_fails_the_launch_and_stops_the_others():
    tag = f"--tag=fail-{os.getpid()}"
    code, out = _run(["--fail_process=1", tag], num_processes=2, devices_per_process=1, grace_s=5)
    assert code == 3, out
    assert "process 1 of 2 exited with status 3" in out
    # Process 0 was blocked in a collective; the launcher must not leave it behind.
    assert "[p0] devices=" not in out
    left = [p for p in psutil.process_iter(["cmdline"]) if tag in (p.info["cmdline"] or [])]
    assert left == []


def test_empty_command_is_refused():
    with pytest.raises(ValueError, match="Nothing to launch"):
        launch_local.launch([], num_processes=2, devices_per_process=1)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_main_parses_double_dash():
    code = launch_local.main(["--num_processes=1", "--devices_per_process=1", "--", PROBE])
    assert code == 0
