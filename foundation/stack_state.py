"""Where the local stack is: `eldercare up` writes `<data dir>/stack.json` with its URLs and pids
and removes it on stop; tester commands read it to find the stack without copied URLs."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from foundation import procs
from foundation.config import Settings

FILE_NAME = "stack.json"

# The settings `up` may fill in for its embedded services: what a tester command needs to join.
URLS = ("database_url", "kafka_bootstrap", "mqtt_url")
BROKER = ("mqtt_auth_dir", "mqtt_protocol", "mqtt_shared_group")


class StackState(BaseModel):
    """One running `eldercare up`: its process, its console and the settings that reach it."""

    pid: int
    started_at: float
    console_url: str
    settings: dict[str, str]
    embedded_pids: dict[str, int] = {}

    @property
    def alive(self) -> bool:
        """Whether the `up` that wrote this file still runs (else the file is stale). After a
        restart of the machine its pid may belong to another program: that one must be ours."""
        if not procs.pid_alive(self.pid):
            return False
        try:
            return b"eldercare" in Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:  # no /proc (not Linux): the pid alone
            return True


def path(data_dir: Path) -> Path:
    return data_dir.resolve() / FILE_NAME


def write(settings: Settings, embedded_pids: dict[str, int]) -> Path:
    """Record this process as the running stack; owner-only (the URLs carry passwords)."""
    state = StackState(
        pid=os.getpid(), started_at=time.time(),
        console_url=f"http://{settings.console_bind}/",
        settings={k: str(getattr(settings, k)) for k in URLS + BROKER},
        embedded_pids=embedded_pids,
    )
    target = path(settings.data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(state.model_dump_json(indent=2))
    tmp.replace(target)  # readers never see half a file
    return target


def remove(data_dir: Path) -> None:
    """Forget the stack this process recorded (only if the file is still ours)."""
    found = read(data_dir, include_stale=True)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path(data_dir).unlink()


def read(data_dir: Path, include_stale: bool = False) -> StackState | None:
    """The running stack recorded in `data_dir`; None when there is none, or it is stale (its
    `up` process is gone: killed with SIGKILL, or the machine restarted)."""
    try:
        state = StackState.model_validate(json.loads(path(data_dir).read_text("utf-8")))
    except (OSError, ValueError):
        return None
    return state if include_stale or state.alive else None


def join(settings: Settings, needed: tuple[str, ...]) -> Settings | None:
    """`settings` with the `needed` URLs that are not set taken from the local stack; None when
    one is missing and no live stack is recorded in the data dir. A URL set by hand wins."""
    if all(getattr(settings, n) for n in needed):
        return settings
    state = read(settings.data_dir)
    if state is None:
        return None
    changes: dict[str, object] = {
        k: state.settings[k] for k in URLS if not getattr(settings, k) and k in state.settings}
    if "mqtt_url" in changes:  # the stack's broker: talk to it the way the stack does
        changes.update({k: state.settings[k] for k in BROKER if k in state.settings})
    return settings.model_copy(update=changes)
