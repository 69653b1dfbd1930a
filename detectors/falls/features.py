"""What one accelerometer window says: the impact, the posture before and after, stillness.

The same functions judge a window from a device in production and a window cut from a public
dataset in the evaluation, so the figures in the README measure the code that runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.falls.params import FallParams, FallThresholds
from detectors.falls.signal import Array, angle_deg, as_samples, magnitude

Vector = tuple[float, float, float]


@dataclass(frozen=True)
class WindowFeatures:
    """The measurements a fall verdict rests on; None where the window is too short to say."""

    peak_g: float
    peak_offset_s: float
    freefall_min_g: float | None
    still_std_g: float | None
    orientation_change_deg: float | None
    before: Vector | None  # mean gravity direction before the fall
    after: Vector | None  # ... over the stillest stretch after the impact (the fallen posture)
    end: Vector  # ... over the window's last second
    window_std_g: float
    ends_upright: bool  # the window ends back in the posture from before: got up, picked up

    def evidence(self) -> dict[str, float | None]:
        """The readings worth showing to staff, rounded."""
        def r(v: float | None, n: int = 2) -> float | None:
            return None if v is None else round(v, n)
        return {
            "peak_g": r(self.peak_g), "freefall_min_g": r(self.freefall_min_g),
            "still_std_g": r(self.still_std_g, 3),
            "orientation_change_deg": r(self.orientation_change_deg, 1),
        }


def window_features(samples: object, rate_hz: float, params: FallParams) -> WindowFeatures:
    """Measure one window: the highest magnitude is the impact; before and after it (minus the
    fall's own turning and bounces) give the posture change and the stillness."""
    xyz = as_samples(samples)
    if rate_hz <= 0:
        raise ValueError("rate_hz must be positive")
    smv = magnitude(xyz)
    peak = int(np.argmax(smv))
    min_len = max(1, round(params.min_segment_s * rate_hz))

    dip_from = max(0, peak - round(rate_hz))
    freefall = float(smv[dip_from:peak].min()) if peak > dip_from else None

    before_seg = xyz[:max(0, peak - round(params.pre_impact_s * rate_hz))]
    before_seg = before_seg[-round(params.after_s * rate_hz):]
    after_from = peak + round(params.settle_s * rate_hz)
    after_seg = xyz[after_from:after_from + round(params.after_s * rate_hz)]
    if params.still_span_s is not None and len(after_seg) > round(params.still_span_s * rate_hz):
        after_seg = _stillest(after_seg, max(2, round(params.still_span_s * rate_hz)))

    before = _mean(before_seg) if len(before_seg) >= min_len else None
    after = _mean(after_seg) if len(after_seg) >= min_len else None
    still = float(magnitude(after_seg).std()) if len(after_seg) >= min_len else None
    turn = angle_deg(np.asarray(before), np.asarray(after)) if before and after else None
    end_seg = xyz[max(after_from, len(xyz) - max(1, round(rate_hz))):]
    end = _mean(end_seg) if len(end_seg) >= min_len else _mean(xyz[-1:])
    return WindowFeatures(
        peak_g=float(smv[peak]), peak_offset_s=peak / rate_hz, freefall_min_g=freefall,
        still_std_g=still, orientation_change_deg=turn, before=before, after=after, end=end,
        window_std_g=float(smv.std()) if len(smv) > 1 else 0.0,
        ends_upright=len(end_seg) >= min_len and back_upright(end, before, after, params),
    )


def looks_like_fall(f: WindowFeatures, t: FallThresholds) -> bool:
    """Impact, then lying still in a turned posture, and not back up by the window's end.
    Unknown stillness or posture (a window cut short) never vetoes: a missed fall is worse
    than a false alarm the elder can cancel."""
    if f.peak_g < t.impact_g or f.ends_upright:
        return False
    if f.still_std_g is not None and f.still_std_g > t.still_std_g:
        return False
    return f.orientation_change_deg is None or f.orientation_change_deg >= t.orientation_deg


def back_upright(posture: Vector, before: Vector | None, fallen: Vector | None,
                 params: FallParams) -> bool:
    """`posture` is the one from before the fall again (within `recovered_deg`), and nearer to
    it than to the posture the fall ended in. Unknown postures never say "recovered"."""
    if before is None or fallen is None:
        return False
    p = np.asarray(posture)
    to_before = angle_deg(p, np.asarray(before))
    return to_before <= params.recovered_deg and to_before < angle_deg(p, np.asarray(fallen))


def shows_recovery(f: WindowFeatures, before: Vector | None, fallen: Vector | None,
                   params: FallParams) -> bool:
    """A later window that shows the wearer up again: back in the posture from before the
    fall, or walking about out of the posture the fall ended in. Moving while still in the
    fallen posture (struggling on the floor) is not recovery."""
    if back_upright(f.end, before, fallen, params):
        return True
    if fallen is None or f.window_std_g < params.moving_std_g:
        return False
    return angle_deg(np.asarray(f.end), np.asarray(fallen)) > params.recovered_deg


def _stillest(seg: Array, span: int) -> Array:
    """The stretch of `span` samples whose magnitude varies least (rolling std via cumsums)."""
    smv = magnitude(seg)
    c1 = np.concatenate([[0.0], np.cumsum(smv)])
    c2 = np.concatenate([[0.0], np.cumsum(smv * smv)])
    mean = (c1[span:] - c1[:-span]) / span
    var = (c2[span:] - c2[:-span]) / span - mean * mean
    start = int(np.argmin(var))
    return seg[start:start + span]


def _mean(seg: Array) -> Vector:
    m = seg.mean(axis=0)
    return (float(m[0]), float(m[1]), float(m[2]))
