"""The classic threshold rule every fall detector is compared with: an impact above 2.5 g, then
a posture change of more than 45 degrees, on a 50 Hz signal (after Bourke et al. 2007 and
Kangas et al. 2008). Used only as the baseline in `eldercare eval` and `eldercare train`."""

from __future__ import annotations

import numpy as np

from detectors.falls.signal import Array, angle_deg, magnitude

RATE_HZ = 50.0
IMPACT_G = 2.5
TURN_DEG = 45.0
# Posture before: the second ending one second before the impact (the descent excluded);
# after: from one to three seconds after it (bounces excluded).
BEFORE_S = (-2.0, -1.0)
AFTER_S = (1.0, 3.0)


def classic_rule(xyz: Array, rate_hz: float = RATE_HZ) -> bool:
    """True when any impact above IMPACT_G is followed by a turn above TURN_DEG. `xyz` is a
    recording (n, 3) in g, already at `rate_hz` (the rule is defined at 50 Hz)."""
    smv = magnitude(xyz)
    n = smv.shape[0]
    for p in np.flatnonzero(smv > IMPACT_G):
        b0, b1 = (max(0, int(p) + round(s * rate_hz)) for s in BEFORE_S)
        a0, a1 = (min(n, int(p) + round(s * rate_hz)) for s in AFTER_S)
        if b1 <= b0:  # an impact in the first second: the posture from the start
            b0, b1 = 0, max(1, int(p))
        if a1 - a0 < round(0.5 * rate_hz):
            continue  # the recording ends too soon after the impact to see a posture
        if angle_deg(xyz[b0:b1].mean(axis=0), xyz[a0:a1].mean(axis=0)) > TURN_DEG:
            return True
    return False
