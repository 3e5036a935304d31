"""Rehearse a multi-host JAX run on one machine: N processes on loopback, CPU devices.

    python tools/launch_local.py --num_processes=2 --devices_per_process=2 -- \\
        main.py --config=configs/rca.py:demo --workdir=/tmp/run

Each process gets ``--coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=I``
appended to its arguments (a free port is chosen), ``JAX_PLATFORMS=cpu`` and
``JAX_NUM_CPU_DEVICES=devices_per_process`` in its environment, and its output is prefixed with
``[pI]``. If one process fails, the others are stopped and the launcher exits with that
process's status, naming it: a multi-host job is only as alive as its weakest process.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pump(stream, prefix: str, sink) -> None:
    for line in iter(stream.readline, ""):
        sink.write(f"{prefix}{line}")
        sink.flush()
    stream.close()


def _stop(procs: Sequence[subprocess.Popen], grace_s: float) -> None:
    """Terminates every live process group, then kills what is left after ``grace_s``."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def launch(
    command: Sequence[str],
    *,
    num_processes: int,
    devices_per_process: int,
    port: int | None = None,
    grace_s: float = 10.0,
    sink=sys.stdout,
) -> int:
    """Runs ``python command...`` in ``num_processes`` processes; returns the overall exit code.

    Returns 0 only if every process exits with 0. On the first failure the others are stopped
    (SIGTERM, then SIGKILL after ``grace_s``) and that process's exit code is returned.
    """
    if num_processes < 1 or devices_per_process < 1:
        raise ValueError(
            f"num_processes={num_processes} and devices_per_process={devices_per_process} "
            "must both be >= 1."
        )
    if not command:
        raise ValueError("Nothing to launch: give the script and its arguments after '--'.")
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    for i in range(num_processes):
        env = dict(os.environ)
        env["JAX_PLATFORMS"] = "cpu"
        env["JAX_NUM_CPU_DEVICES"] = str(devices_per_process)
        env["PYTHONUNBUFFERED"] = "1"
        argv = [
            sys.executable,
            *command,
            f"--coordinator_address={address}",
            f"--num_processes={num_processes}",
            f"--process_id={i}",
        ]
        # Own process group per child, so stopping it also stops whatever it started.
        p = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        procs.append(p)
        t = threading.Thread(target=_pump, args=(p.stdout, f"[p{i}] ", sink), daemon=True)
        t.start()
        pumps.append(t)

    # One waiter per process reports exits in the order they happen: when one process dies,
    # its peers often fail a moment later on the broken connection, and the one to name is
    # the first.
    exits: queue.Queue[tuple[int, int]] = queue.Queue()
    for i, p in enumerate(procs):
        threading.Thread(target=lambda i=i, p=p: exits.put((i, p.wait())), daemon=True).start()

    status = 0
    try:
        for _ in range(num_processes):
            i, code = exits.get()
            if code != 0:
                sink.write(
                    f"launch_local: process {i} of {num_processes} exited with status "
                    f"{code}; stopping the others.\n"
                )
                status = code if code > 0 else 128 - code
                break
    except KeyboardInterrupt:
        status = 130
    finally:
        _stop(procs, grace_s)
        for t in pumps:
            t.join(timeout=5)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=2)
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- script.py [args...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return launch(
            command,
            num_processes=args.num_processes,
            devices_per_process=args.devices_per_process,
            port=args.port,
        )
    except ValueError as e:  # the arguments (the messages name them)
        print(f"launch_local: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
