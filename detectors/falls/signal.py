"""Accelerometer signal arithmetic in numpy: magnitude, resampling, gravity direction, windows.

Everything here is pure and shape-checked; it knows nothing of events, devices or datasets."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def as_samples(samples: object) -> Array:
    """Samples as an (n, 3) float array in g; a clear error for anything else."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"accelerometer samples must be a non-empty (n, 3) array, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("accelerometer samples contain NaN or infinity")
    return arr


def magnitude(xyz: Array) -> Array:
    """The signal magnitude vector (SMV): |a| per sample, 1 g at rest whatever the orientation."""
    out: Array = np.sqrt(np.einsum("ij,ij->i", xyz, xyz))
    return out


def angle_deg(a: Array, b: Array) -> float:
    """Angle between two mean acceleration (gravity) vectors, in degrees."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    cos = float(np.dot(a, b)) / (na * nb)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def resample(t_s: Array, xyz: Array, rate_hz: float) -> Array:
    """Resample irregular samples onto a uniform grid at `rate_hz`.

    When the source is faster than the target the signal is first averaged over one target
    period (a boxcar low-pass), as a device's accelerometer does at a low output data rate, so
    a 200 Hz spike is not kept or lost at random by the decimation."""
    if t_s.ndim != 1 or t_s.shape[0] != xyz.shape[0]:
        raise ValueError("timestamps and samples differ in length")
    if rate_hz <= 0:
        raise ValueError("rate_hz must be positive")
    order = np.argsort(t_s, kind="stable")
    t, a = t_s[order], xyz[order]
    # Several samples with one timestamp (coarse device clocks): keep their mean.
    t, inverse = np.unique(t, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    a = np.stack([np.bincount(inverse, weights=a[:, k]) / counts for k in range(3)], axis=1)
    if t.shape[0] == 1:
        return a.copy()
    src_rate = (t.shape[0] - 1) / float(t[-1] - t[0])
    width = round(src_rate / rate_hz)
    if width > 1:
        kernel = np.ones(width) / width
        a = np.stack([np.convolve(a[:, k], kernel, mode="same") for k in range(3)], axis=1)
        # `same` convolution shrinks the edges towards zero; restore the unfiltered edges.
        half = width // 2
        if a.shape[0] > 2 * half:
            a[:half] = a[half]
            a[-half:] = a[-half - 1]
    grid = np.arange(t[0], t[-1] + 1e-9, 1.0 / rate_hz)
    return np.stack([np.interp(grid, t, a[:, k]) for k in range(3)], axis=1)


def impact_windows(xyz: Array, rate_hz: float, trigger_g: float, before_s: float,
                   after_s: float) -> list[tuple[int, Array]]:
    """Cut the windows a device would send: one per SMV peak >= `trigger_g`, from `before_s`
    before the peak to `after_s` after it; the next trigger is looked for after the window's
    end. Each comes with the index of its first sample in `xyz`."""
    smv = magnitude(xyz)
    before, after = round(before_s * rate_hz), round(after_s * rate_hz)
    windows: list[tuple[int, Array]] = []
    i, n = 0, smv.shape[0]
    while i < n:
        above = np.flatnonzero(smv[i:] >= trigger_g)
        if above.size == 0:
            break
        start = i + int(above[0])
        # The impact is the highest sample of the burst, within half a second of the trigger.
        burst = smv[start:start + max(1, round(0.5 * rate_hz))]
        peak = start + int(np.argmax(burst))
        first = max(0, peak - before)  # a device's ring buffer may resend earlier samples
        windows.append((first, xyz[first:min(n, peak + after + 1)]))
        i = peak + after + 1
    return windows
