"""The simulation as data: a time-ordered list of what each device publishes and when it loses
or regains its connection. Routines and scenario injections produce it; the player runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class DeviceRef:
    """Where a virtual device publishes: its community, id and kind."""

    community_id: str
    device_id: str
    kind: str
    elder_key: str


@dataclass(frozen=True, order=True)
class Step:
    """At simulated time `t`, `device` publishes `body` ("publish") or loses its connection
    without saying goodbye so its last will fires ("drop"), or connects again ("reconnect"); or
    someone acts on the elder's incident ("respond": `body` says what, see
    `simulators.responders`).
    `activity` marks what the elder does (an injection can stop it); heartbeats are not."""

    t: float
    seq: int
    device: DeviceRef = field(compare=False)
    action: Literal["publish", "drop", "reconnect", "respond"] = field(default="publish",
                                                                      compare=False)
    body: dict[str, Any] = field(default_factory=dict, compare=False)
    activity: bool = field(default=False, compare=False)
    label: str = field(default="", compare=False)


class Timeline:
    """Steps in order of time; insertion order breaks ties so a window precedes its flag."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._seq = 0

    def add(self, t: float, device: DeviceRef, body: dict[str, Any] | None = None, *,
            action: Literal["publish", "drop", "reconnect", "respond"] = "publish",
            activity: bool = False,
            label: str = "") -> None:
        self._seq += 1
        self.steps.append(Step(t, self._seq, device, action, body or {}, activity, label))

    def remove(self, keep: Any) -> None:
        """Keep only the steps for which `keep(step)` is true."""
        self.steps = [s for s in self.steps if keep(s)]

    def ordered(self) -> list[Step]:
        return sorted(self.steps)
