"""Detector parameters, each with the reason for its default (env prefix ELDERCARE_DETECT_).

Defaults favour safety where a miss can kill (SOS, fire, falls, severe hypoglycaemia) and
confirmation where a single misread is common (wrist SpO2 and heart rate, cuff blood pressure)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from detectors.falls.params import FallParams


class DetectorConfig(BaseSettings):
    """Every tunable of the detectors and the stream engine."""

    model_config = SettingsConfigDict(env_prefix="ELDERCARE_DETECT_", env_file=".env",
                                      extra="ignore")

    fall: FallParams = Field(
        default_factory=FallParams,
        description="Accelerometer fall detection (JSON, e.g. ELDERCARE_DETECT_FALL="
        "'{\"freefall_g\": 0.5}'); see detectors/falls/params.py for every field and its reason.")

    # --- engine -------------------------------------------------------------------------
    group: str = Field(
        "eldercare-detectors", description="Kafka consumer group; also keys the stored state.")
    topic: str = Field("eldercare.events.v1", description="The canonical events topic.")
    fetch_max_wait_ms: int = Field(
        50, description="How long the consumer's fetch waits for records. The broker answers "
        "a waiting fetch only when the wait is over (tansu), so this is the longest an event "
        "waits for an awake engine, and each wait one request: urgent events go through the "
        "priority lane, which waits 5 ms (detectors.service.LANE_FETCH_MAX_WAIT_MS).")
    rest_probe_s: float = Field(
        1.0, description="While no record comes the consumer rests (foundation/wakeup.py) and "
        "still asks the broker for new records this often (the producers' announcements wake it "
        "at once; this catches records written by clients outside the platform).")
    profiles_ahead: bool = Field(
        False, description="Read every elder's registry profile at start and refresh stale "
        "ones behind the events, never before them: an event waits for the registry only for "
        "an elder it has never read. The priority lane does this (an SOS is judged without a "
        "database read); the main engine reads the elders it meets, in bulk per batch.")
    checkpoint_interval_s: float = Field(
        1.0, description="Seconds between checkpoints (state rows + offsets in one transaction). "
        "Short, because everything after the last checkpoint is replayed after a crash.")
    timer_tick_s: float = Field(
        5.0, description="Wall-clock seconds between timer sweeps. Silence is measured in "
        "minutes to hours, so a few seconds of resolution cost nothing.")
    event_timer_s: float = Field(
        300.0, description="Timers also fire each time a partition's event time passes a "
        "multiple of this (seconds of event time), so a replay at any speed has its silences "
        "judged in event time. 0: wall-clock sweeps only.")
    allowed_lateness_s: float = Field(
        30.0, description="The watermark trails the newest event time by this much, so a "
        "device whose clock or link is a little behind is not taken for silence.")
    idle_advance_s: float = Field(
        5.0, description="A partition that is caught up and has had no event for this long "
        "advances its watermark by the wall clock: silence must be detected without traffic.")
    outage_gap_s: float = Field(
        120.0, description="A partition checkpointed longer ago than this when it is assigned "
        "means the detectors were down: silence timers are re-armed from the resume time.")
    outage_quiet_s: float = Field(
        900.0, description="No event on any partition for this long means ingest is down (a "
        "real deployment always has heartbeats flowing): watermarks stop advancing and timers "
        "are re-armed when events return. 0 disables (tests with a single elder).")
    restart_grace_s: float = Field(
        600.0, description="After an outage, silence is counted from the resume time plus this "
        "grace, so devices have time to report again before anyone is called offline.")
    profile_ttl_s: float = Field(
        60.0, description="Seconds an elder's registry profile is cached (away periods, "
        "living alone, thresholds): registry edits take effect within a minute.")
    timezone: str = Field(
        "Asia/Shanghai", description="Local time of the homes, for routines and deadlines.")

    # --- SOS, device fall flag, alarms ----------------------------------------------------
    sos_episode_s: float = Field(
        900.0, description="Presses within this long of the previous one join the same alert: "
        "a frightened elder presses again and again; one incident, not ten.")
    alarm_episode_s: float = Field(
        1800.0, description="An alarm re-sounding within this long of the last one is the "
        "same fire or leak.")
    alarm_min_hold_s: float = Field(
        0.0, description="Minimum time an alarm must sound before it alerts; 0 for safety "
        "(fire spreads in minutes). Raise for a known-noisy detector.")
    alarm_confirm: bool = Field(
        False, description="Require a second signal (another alarm in the home, or a heat "
        "reading) before a critical alert; off by default: a lone smoke alarm is a fire.")
    alarm_confirm_window_s: float = Field(
        120.0, description="How long to wait for the second signal; an unconfirmed alarm is "
        "then still alerted, as high instead of critical.")
    alarm_heat_c: float = Field(
        57.0, description="A temperature reading this hot confirms a smoke alarm (fixed-"
        "temperature heat detectors trip at 57 C).")

    # --- vital signs (clinical defaults; per-elder overrides in elders.detector_thresholds) -
    sbp_high: float = Field(180.0, description="Hypertensive crisis: systolic >= 180 mmHg.")
    dbp_high: float = Field(120.0, description="Hypertensive crisis: diastolic >= 120 mmHg.")
    sbp_low: float = Field(90.0, description="Hypotension: systolic < 90 mmHg.")
    sbp_hard_high: float = Field(
        220.0, description="Beyond this a single systolic reading alerts without a repeat.")
    dbp_hard_high: float = Field(
        130.0, description="Beyond this a single diastolic reading alerts without a repeat.")
    sbp_hard_low: float = Field(
        70.0, description="Below this a single systolic reading alerts without a repeat "
        "(shock range).")
    glucose_low: float = Field(3.9, description="Hypoglycaemia (level 1): < 3.9 mmol/L.")
    glucose_severe: float = Field(
        3.0, description="Severe hypoglycaemia (level 2): < 3.0 mmol/L, critical, no repeat: "
        "the elder may lose consciousness before re-testing.")
    glucose_high: float = Field(
        16.7, description="Severe hyperglycaemia: > 16.7 mmol/L; a repeat confirms it (a sugary "
        "finger reads high).")
    glucose_hard_high: float = Field(
        27.8, description="Beyond this (500 mg/dL) a single glucose reading alerts.")
    spo2_low: float = Field(90.0, description="Hypoxaemia: SpO2 < 90 %.")
    spo2_hard_low: float = Field(
        80.0, description="Below this a single SpO2 reading alerts without a repeat.")
    hr_low: float = Field(40.0, description="Bradycardia at rest: < 40 bpm.")
    hr_high: float = Field(130.0, description="Tachycardia at rest: > 130 bpm.")
    hr_hard_low: float = Field(30.0, description="A single heart rate below this alerts.")
    hr_hard_high: float = Field(180.0, description="A single heart rate above this alerts.")
    vital_confirm_s: float = Field(
        1800.0, description="A repeat reading within 30 min confirms an extreme one: cuffs and "
        "wrist sensors misread with movement, and a re-test is the clinical practice.")
    vital_episode_s: float = Field(
        6 * 3600.0, description="One alert per sign and rule per 6 h: the staff is already "
        "on it; later readings join the evidence instead of calling again.")
    baseline_window: int = Field(
        30, description="Readings kept per sign for the elder's own baseline (about a month "
        "of daily measurements).")
    baseline_min: int = Field(
        10, description="Readings needed before deviation from the baseline is judged.")
    baseline_z: float = Field(
        4.0, description="Robust z (|x - median| / 1.4826 MAD) beyond which a reading deviates; "
        "4 keeps day-to-day variation quiet, and a repeat must confirm it.")

    # --- inactivity (see docs/inactivity.md) ------------------------------------------------
    wake_h: float = Field(
        7.0, description="Usual wake-up hour of a new elder (local), until the elder's own "
        "mornings outweigh it (two days' worth; the registry's wake_h, if entered, instead).")
    wake_margin_h: float = Field(
        2.0, description="No activity by the usual wake-up hour plus this margin alerts.")
    wake_margin_alone_h: float = Field(
        1.75, description="The margin for an elder living alone: nobody else would notice. "
        "Below 2 h, so that a silent morning is caught by the usual wake-up + 2 h even when "
        "the learned wake-up has drifted a little later.")
    silence_min_h: float = Field(
        3.0, description="Daytime silence shorter than this never alerts (a nap, a film).")
    silence_min_alone_h: float = Field(
        3.0, description="The same for an elder living alone.")
    silence_max_h: float = Field(
        5.5, description="A daytime silence this long always alerts (while the elder is "
        "usually up and at home), however quiet the elder's ordinary days: caught within 6 h.")
    silence_gap_factor: float = Field(
        1.25, description="A daytime silence alerts past this many times the elder's ordinary "
        "longest silence of a day (the second longest of the last 14 days)...")
    silence_gap_extra_h: float = Field(
        0.5, description="...plus this margin.")
    routine_prior_weight: float = Field(
        2.0, description="Days' worth of the generic routine (awake 07-21) a new elder starts "
        "with; the elder's own days outweigh it within a few days.")
    routine_cap: int = Field(
        28, description="Observed days per hour of the day are halved past this, so the "
        "routine follows a changing elder (and the counts stay small integers).")
    awake_p: float = Field(
        0.3, description="An hour with at least this chance of some activity is one the elder "
        "is usually up; only such hours count as silence (sleep is not). Low, because homes "
        "with few sensors see a quiet hour even when the elder is up.")
    day_start_h: float = Field(
        4.0, description="The local hour a new day of the routine starts (nights end earlier "
        "than any wake-up).")
    out_confirm_min: float = Field(
        10.0, description="The front door, then nothing inside for this long: the elder went "
        "out, and silence is absence until something moves inside again.")
    out_trailing_s: float = Field(
        90.0, description="Movement this soon after the door is the hallway sensor catching "
        "the elder on the way out, not someone staying in.")
    weak_window_min: float = Field(
        30.0, description="Weak evidence (a plug switching on, a tap running: machines do "
        "that too) counts as activity when a second device, or other activity, is within "
        "this many minutes.")

    # --- check-in, device health ---------------------------------------------------------------
    checkin_default_deadline_h: float | None = Field(
        None, description="Local hour of the daily \"I'm OK\" deadline for elders without one "
        "of their own (elders.detector_thresholds.checkin_deadline_h); None: not enrolled.")
    offline_intervals: float = Field(
        2.0, description="A device is offline after this many missed heartbeat intervals: one "
        "lost heartbeat is common on Wi-Fi and Zigbee.")
    will_grace_s: float = Field(
        300.0, description="After an MQTT last will, wait this long for a reconnect before "
        "calling the device offline (routers reboot).")
    battery_low: int = Field(20, description="Battery % below which maintenance is asked for.")
    battery_ok: int = Field(
        30, description="Battery % above which the low-battery episode ends (hysteresis).")
