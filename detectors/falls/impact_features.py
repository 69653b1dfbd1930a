"""The engineered features of one window around an impact, the input of the learned classifier.

A window arrives at the device's own rate (watches and canes send 25-100 Hz); it is resampled
here to `MODEL_RATE_HZ`, so the classifier sees the same time base whatever the device. Every
feature is measured relative to the window's highest magnitude (the impact); a segment the
window does not cover (a device that sent little before the impact) is NaN, which the trees
route like the training data's missing values."""

from __future__ import annotations

import numpy as np

from detectors.falls.signal import Array, as_samples, magnitude, resample

MODEL_RATE_HZ = 50.0
# Segments (seconds relative to the impact) whose magnitude mean and spread are features: the
# walk before, the descent, the impact, the bounces, and the posture after.
SEGMENTS: tuple[tuple[float, float], ...] = (
    (-4.0, -2.0), (-2.0, -1.0), (-1.0, -0.3), (-0.3, 0.3), (0.3, 1.0), (1.0, 2.0),
    (2.0, 3.5), (3.5, 5.0),
)
BEFORE_POSTURE = (-2.5, -0.5)
AFTER_POSTURE = (1.0, 3.5)
END_POSTURE = (3.5, 5.0)

FEATURE_NAMES: tuple[str, ...] = (
    "peak_g", "freefall_min_g", "freefall_to_peak_s", "jerk_max_gps", "impact_area_g_s",
    "after_area_g_s", "above_1_5g_s", "peaks_after_2g", "still_std_g",
    "turn_deg", "turn_end_deg", "before_to_end_deg",
    "before_x", "before_y", "before_z", "after_x", "after_y", "after_z",
    *(f"{stat}_{a:+.1f}_{b:+.1f}" for a, b in SEGMENTS for stat in ("mean", "std")),
    # Along gravity as it was before the fall (the vertical) and across it: how fast the body
    # was going down at the impact, what hit, and how it lies after (a fall ends lying; sitting
    # down hard ends upright).
    "fall_velocity_mps", "smv_velocity_mps", "below_0_6g_s", "impact_horizontal_g",
    "impact_vertical_g", "after_vertical_g", "after_axes_std_g",
    # The walk before (step rhythm, spread) and how many hard knocks follow the impact.
    "walk_rhythm", "before_std_g", "sixth_peak_after_g",
)
GRAVITY_MPS2 = 9.80665


def resample_window(samples: object, rate_hz: float) -> Array:
    """A window's (n, 3) samples in g at `MODEL_RATE_HZ`."""
    xyz = as_samples(samples)
    if not rate_hz > 0:
        raise ValueError("rate_hz must be positive")
    if rate_hz == MODEL_RATE_HZ or xyz.shape[0] < 2:
        return xyz
    t = np.arange(xyz.shape[0], dtype=np.float64) / rate_hz
    return resample(t, xyz, MODEL_RATE_HZ)


def impact_vector(samples: object, rate_hz: float) -> tuple[Array, float]:
    """The feature vector (ordered as FEATURE_NAMES) of one window, and the impact's offset
    from the window's first sample in seconds."""
    xyz = resample_window(samples, rate_hz)
    r = MODEL_RATE_HZ
    smv = magnitude(xyz)
    n = smv.shape[0]
    p = int(np.argmax(smv))

    def idx(s: float) -> int:
        return int(min(n, max(0, p + round(s * r))))

    def seg(a: float, b: float, min_s: float = 0.3) -> slice | None:
        i, j = idx(a), idx(b)
        return slice(i, j) if j - i >= max(2, round(min_s * r)) else None

    nan = float("nan")
    ff = seg(-1.0, 0.0, 0.1)
    ff_min = float(smv[ff].min()) if ff else nan
    ff_to_peak = (p - (ff.start + int(np.argmin(smv[ff])))) / r if ff else nan
    around = seg(-1.0, 1.0, 0.1)
    jerk = float(np.abs(np.diff(smv[around])).max() * r) if around else nan
    imp = seg(-0.5, 0.5, 0.1)
    impact_area = float(np.abs(smv[imp] - 1.0).sum() / r) if imp else nan
    aft = seg(1.0, 5.0)
    after_area = float(np.abs(smv[aft] - 1.0).sum() / r) if aft else nan
    above = float((smv >= 1.5).sum() / r)
    tail = smv[idx(0.5):]
    peaks_after = float(np.sum((tail[1:-1] >= 2.0) & (tail[1:-1] >= tail[:-2])
                               & (tail[1:-1] > tail[2:]))) if tail.shape[0] > 2 else 0.0
    still = _stillest_std(smv[idx(0.5):idx(5.0)], round(1.5 * r))

    before = _direction(xyz, seg(*BEFORE_POSTURE))
    after = _direction(xyz, seg(*AFTER_POSTURE))
    end = _direction(xyz, seg(*END_POSTURE))
    stats: list[float] = []
    for a, b in SEGMENTS:
        s = seg(a, b, 0.1)
        stats += [float(smv[s].mean()), float(smv[s].std())] if s else [nan, nan]
    vec = np.array([
        float(smv[p]), ff_min, ff_to_peak, jerk, impact_area, after_area, above, peaks_after,
        still, _angle(before, after), _angle(before, end), _angle(after, end),
        *before, *after, *stats, *_vertical_features(xyz, smv, p, before),
    ], dtype=np.float64)
    return vec, p / r


def _vertical_features(xyz: Array, smv: Array, p: int, before: Array) -> list[float]:
    """The features measured along and across gravity before the fall (NaN where the window
    does not cover a stretch, or has no posture before the impact)."""
    r, n, nan = MODEL_RATE_HZ, smv.shape[0], float("nan")

    def cut(a: float, b: float) -> slice:
        return slice(int(min(n, max(0, p + round(a * r)))), int(min(n, max(0, p + round(b * r)))))

    def length(s: slice) -> int:
        return int(s.stop) - int(s.start)

    has_g = not np.isnan(before).any()
    vert = xyz @ before if has_g else np.full(n, nan)
    drop, hit, lie, walk = cut(-1.0, 0.0), cut(-0.3, 0.3), cut(1.5, 5.0), cut(-4.0, -1.0)
    if length(drop):
        fall_v = float((np.cumsum(vert[drop] - 1.0) / r * GRAVITY_MPS2).min())
        smv_v = float((np.cumsum(smv[drop] - 1.0) / r * GRAVITY_MPS2).min())
        below = float((smv[drop] < 0.6).sum() / r)
    else:
        fall_v = smv_v = below = nan
    if length(hit):
        across = np.sqrt(np.maximum(0.0, smv[hit] ** 2 - vert[hit] ** 2))
        hit_h, hit_v = float(across.max()), float(vert[hit].max())
    else:
        hit_h = hit_v = nan
    lying = length(lie) >= 10
    after_v = float(vert[lie].mean()) if lying else nan
    after_std = float(xyz[lie].std(axis=0).sum()) if lying else nan
    rhythm = before_std = nan
    if length(walk) >= 50:
        x = smv[walk] - smv[walk].mean()
        ac = np.correlate(x, x, "full")[x.shape[0] - 1:]
        ac = ac / (ac[0] or 1.0)
        rhythm = float(ac[20:60].max()) if ac.shape[0] > 60 else nan  # steps 0.4-1.2 s apart
        before_std = float(smv[walk].std())
    knocks = np.sort(smv[cut(0.3, 5.0)])[::-1]
    sixth = float(knocks[5]) if knocks.shape[0] > 5 else nan
    return [fall_v, smv_v, below, hit_h, hit_v, after_v, after_std, rhythm, before_std, sixth]


def _direction(xyz: Array, s: slice | None) -> Array:
    """Unit mean acceleration (gravity direction) over a segment; NaNs when not covered."""
    if s is None:
        return np.full(3, np.nan)
    m = xyz[s].mean(axis=0)
    norm = float(np.linalg.norm(m))
    return m / norm if norm > 0 else np.full(3, np.nan)


def _angle(a: Array, b: Array) -> float:
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(float(np.dot(a, b)), -1.0, 1.0))))


def _stillest_std(smv: Array, span: int) -> float:
    """The smallest magnitude spread over `span` consecutive samples (rolling, via cumsums)."""
    if smv.shape[0] < max(2, span):
        return float(smv.std()) if smv.shape[0] >= 2 else float("nan")
    c1 = np.concatenate([[0.0], np.cumsum(smv)])
    c2 = np.concatenate([[0.0], np.cumsum(smv * smv)])
    mean = (c1[span:] - c1[:-span]) / span
    var = (c2[span:] - c2[:-span]) / span - mean * mean
    return float(np.sqrt(max(0.0, float(var.min()))))
