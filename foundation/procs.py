"""Child processes that die with their parent, and small waiting helpers."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the kernel sends SIGTERM to the child when the parent dies, so no orphans remain
    # even if the supervisor is killed with SIGKILL.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    cmd: Sequence[str], log_path: Path | None = None, env: dict[str, str] | None = None,
    stdin: int = subprocess.DEVNULL, cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child (in `cwd`, default ours) that is terminated when this process dies.

    The child gets its own session, so a terminal's Ctrl-C reaches only the supervisor, which
    then stops the services first and the brokers and database last."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        list(cmd), stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
        stdin=stdin, env=env, preexec_fn=_die_with_parent, start_new_session=True, cwd=cwd,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0,
    host: str = "127.0.0.1",
) -> None:
    """Block until something accepts TCP connections on host:port, or raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
