"""Fall detection parameters, each with the reason for its default.

Thresholds differ by where the accelerometer is worn: a wrist swings through several g when an
elder claps or waves, a cane or a hip sensor does not. `by_device_kind` holds the per-device
thresholds; the defaults were tuned on the training subjects of UMAFall and FallAllD
(`python -m detectors.falls.tune`) and checked on held-out subjects
(`python -m detectors.falls.evaluate`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FallThresholds(BaseModel):
    """When one accelerometer window looks like a fall: impact, then stillness and a turn.

    The defaults are the cane's (below); `python -m detectors.falls.tune` re-derives them."""

    model_config = ConfigDict(frozen=True)

    impact_g: float = Field(
        1.8, gt=1.0,
        description="Peak signal magnitude (g) that counts as an impact. Falls onto a hard "
        "floor reach 3-6 g at the hip, but the public datasets' falls are onto mats and "
        "mattresses (1.5-3 g at 20 Hz) and an elder's fall is slower than a volunteer's; "
        "walking at the hip stays around 1.2-1.7 g.",
    )
    still_std_g: float = Field(
        0.75, gt=0.0,
        description="Largest standard deviation of the magnitude (g) over the stillest 1.5 s "
        "after the impact that still counts as lying still. At the hip, tuning for safety "
        "keeps only the most vigorous movement out (jogging, hopping: 0.6-1 g); getting up "
        "and walking is caught by the cancel window instead.",
    )
    orientation_deg: float = Field(
        20.0, ge=0.0, le=180.0,
        description="Smallest change of the gravity direction (degrees) between before and "
        "after the impact. Upright to lying is 60-90 degrees; sitting down hard turns the "
        "trunk by less.",
    )


def _cane() -> FallThresholds:
    # Tuned on the waist sensor (the nearest body position to a cane held at the hip) of the
    # training subjects of UMAFall and FallAllD, each dataset weighing the same, a missed
    # fall weighing twice a false alarm.
    return FallThresholds(impact_g=1.8, still_std_g=0.75, orientation_deg=20.0)


def _watch() -> FallThresholds:
    # Tuned the same way on the wrist sensor. A wrist turns with every gesture, so a small
    # turn (10 degrees) counts only with more stillness (0.3 g) than at the hip.
    return FallThresholds(impact_g=2.0, still_std_g=0.3, orientation_deg=10.0)


class FallParams(BaseModel):
    """Server-side fall detection on accelerometer windows and its cancel window."""

    model_config = ConfigDict(frozen=True)

    default: FallThresholds = Field(
        default_factory=_cane,
        description="Thresholds for a device kind not listed in `by_device_kind`.",
    )
    by_device_kind: dict[str, FallThresholds] = Field(
        default_factory=lambda: {"smart_cane": _cane(), "smart_watch": _watch()},
        description="Thresholds per device kind, tuned on the body position that stands for "
        "it in the public datasets (watch: wrist; cane: waist/thigh as a proxy).",
    )
    freefall_g: float = Field(
        0.6, gt=0.0, lt=1.0,
        description="A magnitude below this (g) in the second before the impact is reported as "
        "a free-fall dip. Evidence only, not required: at 20 Hz the dip often falls between "
        "two samples.",
    )
    pre_impact_s: float = Field(
        0.5, ge=0.0,
        description="Seconds before the impact excluded from the 'before' posture: the fall "
        "itself turns the body during this time (a fall's descent takes 0.3-0.8 s). Kept "
        "short so that a device sending only about 1 s before the impact still gives a "
        "posture to compare with.",
    )
    settle_s: float = Field(
        0.5, ge=0.0,
        description="Seconds after the impact excluded from the 'after' posture and stillness: "
        "bounces and the arms catching the body.",
    )
    after_s: float = Field(
        4.0, gt=0.0,
        description="Seconds after `settle_s` over which stillness and posture are measured.",
    )
    still_span_s: float | None = Field(
        1.5, gt=0.0,
        description="Stillness and the lying posture are taken from the stillest stretch of "
        "this many seconds within the 'after' segment (None: the whole segment): people on "
        "the floor often roll or push once before lying still. Chosen with `settle_s` and "
        "`after_s` on the training subjects of both datasets.",
    )
    min_segment_s: float = Field(
        0.5, gt=0.0,
        description="Shortest before/after segment worth judging; a shorter one counts as "
        "unknown, and unknown never vetoes a fall (missing a fall is the worst failure).",
    )
    cancel_window_s: float = Field(
        30.0, ge=0.0,
        description="Seconds after the impact during which getting up (steps, walking or an "
        "upright posture in a later window) or an 'I'm OK' press cancels the alert. Long "
        "enough to find and press a button; short enough that help is on its way within a "
        "minute, far from the 'long lie' (an hour or more on the floor) that harms elders.",
    )
    recovered_deg: float = Field(
        10.0, ge=0.0, le=180.0,
        description="A window that ends within this angle (degrees) of the posture before the "
        "fall, and nearer to it than to the fallen posture, shows the elder (or the cane) "
        "upright again: in the fall's own window it is no fall, later it cancels. Tight, so "
        "a fall that turns the body only a little is not mistaken for getting up (10 did "
        "better than 15-25 on the training subjects of both datasets).",
    )
    moving_std_g: float = Field(
        0.1, gt=0.0,
        description="A later window whose magnitude varies more than this (g), out of the "
        "fallen posture, shows walking about: the elder got up. Walking shows 0.1-0.4 g; "
        "lying or sitting still under 0.05 g.",
    )
    use_model: bool = Field(
        True,
        description="Judge windows with the learned classifier of the device's position "
        "(`model_file`); False falls back to the threshold rule above (`by_device_kind`). "
        "A position without a model always uses the rule.",
    )
    model_file: str | None = Field(
        None,
        description="The fall model file (JSON, written by `eldercare train falls`); None: "
        "the one shipped in detectors/falls/model/.",
    )
    device_flag_match_s: float = Field(
        10.0, ge=0.0,
        description="A device's own fall flag within this many seconds of a detected impact "
        "on the same device is the same fall, already alerted: no second alert.",
    )

    def thresholds_for(self, device_kind: str) -> FallThresholds:
        """The thresholds that apply to one device kind."""
        return self.by_device_kind.get(device_kind, self.default)
