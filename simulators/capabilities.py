"""Which scenario requirements the detectors in this checkout can meet.

A scenario lists what it `requires` beyond the basics; `available()` reads which detector
modules the detector service actually wires in (what `detectors.engine` imports), so the CI test
runs every scenario the current detectors can pass. `ELDERCARE_SCENARIO_AVAILABLE` (comma
separated) replaces the answer, e.g. when testing a stack configured differently."""

from __future__ import annotations

import os
import subprocess
import sys

# detector module -> the requirements it meets
PROVIDES: dict[str, set[str]] = {
    "detectors.immediate": {"sos", "smoke", "gas", "heat", "fall_flag"},
    "detectors.alarms": {"sos", "smoke", "gas", "heat"},
    "detectors.falls.detector": {"fall_flag", "fall_accel"},
    "detectors.vitals": {"vital"},
    "detectors.inactivity": {"inactivity", "away"},
    "detectors.checkin": {"checkin_missed"},
    "detectors.health": {"low_battery", "device_offline", "gateway_offline"},
}
# Never automatic: `alarm_hold` needs a stack started with a smoke hold time, `long` opts in to
# minutes-long runs.


def available() -> set[str]:
    """The requirements met by the detectors `detectors.engine` loads."""
    override = os.environ.get("ELDERCARE_SCENARIO_AVAILABLE")
    if override is not None:
        return {r.strip() for r in override.split(",") if r.strip()}
    # A fresh interpreter: in this one, tests may have imported detectors the engine does not.
    probe = ("import sys, detectors.engine; "
             "print('\\n'.join(m for m in sys.modules if m.startswith('detectors.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    found: set[str] = set()
    for module, provides in PROVIDES.items():
        if module in out:
            found |= provides
    return found
