"""Inactivity on real homes' logs: the loaders for each format, the silent-day evaluation on a
small home written here, and the detector's robustness rules (going out, a sensor firing all
night, weak evidence, a late riser). Pure logic: no stack."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from detectors.base import ElderProfile
from detectors.config import DetectorConfig
from detectors.evaluation.homes import load_homes, to_events
from detectors.evaluation.silent_days import evaluate_home, evaluate_homes, format_report
from detectors.inactivity import InactivityDetector, InactivityState
from foundation.contracts.events import CanonicalEvent

TZ = "Asia/Shanghai"


# --- loaders ------------------------------------------------------------------------------------


def test_documented_csv_with_away_periods(tmp_path: Path) -> None:
    (tmp_path / "flat7.csv").write_text(
        "time,sensor,room,kind,value\n"
        "2024-03-04 07:02:10,pir1,bedroom,motion,on\n"
        "2024-03-04 07:05:00,bedmat,bedroom,bed,off\n"
        "2024-03-04 07:09:00,wc,bathroom,flush,\n"
        "2024-03-04T07:30:00,kettle,kitchen,plug,1850\n"
        "2024-03-04 08:00:00,front,hall,door,open\n", encoding="utf-8")
    (tmp_path / "flat7.away.csv").write_text("start,end\n2024-03-05 09:00,2024-03-07 18:00\n")
    (home,) = load_homes(tmp_path)
    assert home.name == "flat7" and len(home.readings) == 5
    assert [r.kind for r in home.readings] == [
        "motion_sensor", "pressure_mat", "toilet_flush", "smart_plug", "door_contact"]
    assert home.away == [(datetime(2024, 3, 5, 9), datetime(2024, 3, 7, 18))]
    events = to_events(home, _tz())
    assert [e.type for e in events] == ["motion", "occupancy", "flush", "power", "door"]
    assert events[3].data == {"watts": 1850.0} and events[4].data == {"open": True}
    assert events[0].event_time == datetime(2024, 3, 3, 23, 2, 10, tzinfo=UTC)


def _tz() -> ZoneInfo:
    return ZoneInfo(TZ)


def test_casas_lines_keep_activity_sensors_and_drop_temperature(tmp_path: Path) -> None:
    log = tmp_path / "milan.txt"
    log.write_text(
        "2009-10-16 00:01:04.000059 M017 ON\n"
        "2009-10-16 00:01:07.000019 M017 OFF Sleep begin\n"
        "2009-10-16 00:02:11 T002 21.5\n"
        "2009-10-16 06:55:29.43 D001 OPEN\n"
        "2009-10-16 06:55:40.1 D001 CLOSE\n", encoding="utf-8")
    (home,) = load_homes(log)
    kinds = [(r.sensor, r.kind, r.value) for r in home.readings]
    assert kinds[0] == ("M017", "motion_sensor", "ON") and kinds[2][1] == ""
    events = to_events(home, _tz())
    assert [(e.type, e.data) for e in events] == [
        ("motion", {}), ("door", {"open": True}), ("door", {"open": False})]


def test_start_end_tables_become_activations(tmp_path: Path) -> None:
    table = tmp_path / "houseX.txt"
    table.write_text(
        "\t\tStart time\t\tEnd time\t\t\tLocation\tType\t\tPlace\n"
        "\t\t----------\t\t--------\t\t\t--------\t----\t\t-----\n"
        "2011-11-28 02:27:59\t2011-11-28 10:18:11\tBed\t\tPressure\tBedroom\n"
        "2011-11-28 10:21:24\t2011-11-28 10:21:31\tCabinet\t\tMagnetic\tBathroom\n"
        "2011-11-28 10:25:44\t2011-11-28 10:32:06\tBasin\t\tPIR\t\tBathroom\n"
        "2011-11-28 10:34:23\t2011-11-28 10:34:41\tToilet\t\tFlush\t\tBathroom\n"
        "2011-11-28 11:00:00\t2011-11-28 11:00:20\tMaindoor\tMagnetic\tEntrance\n",
        encoding="utf-8")
    (home,) = load_homes(table)
    assert len(home.readings) == 10
    kinds = [r.kind for r in home.readings if r.value == "on"]
    assert kinds == ["pressure_mat", "cupboard_contact", "motion_sensor", "toilet_flush",
                     "door_contact"]
    assert [e.type for e in to_events(home, _tz())][:2] == ["occupancy", "occupancy"]


def test_numbered_sensors_are_named_by_a_sensors_file(tmp_path: Path) -> None:
    (tmp_path / "houseY.txt").write_text(
        "Start time\tEnd time\tID\tVal\n"
        "25-Feb-2008 00:20:14\t25-Feb-2008 00:22:57\t24\t1\n"
        "25-Feb-2008 09:01:00\t25-Feb-2008 09:01:30\t5\t1\n"
        "25-Feb-2008 09:05:00\t25-Feb-2008 09:05:02\t7\t1\n")
    (tmp_path / "houseY.sensors.csv").write_text(
        "id,description,room,kind\n24,Bed,bedroom,\n5,Frontdoor,hall,\n7,kettle,,plug\n")
    (tmp_path / "houseY_ADLs.txt").write_text(  # activity labels: not a sensor log
        "25-Feb-2008 09:00:00\t25-Feb-2008 09:10:00\tleave house\n")
    (home,) = load_homes(tmp_path)
    assert home.name == "houseY"
    assert [r.kind for r in home.readings if r.value == "on"] == [
        "pressure_mat", "door_contact", "smart_plug"]
    assert home.readings[0].sensor == "24 Bed" and home.readings[0].room == "bedroom"


def test_placelab_folder(tmp_path: Path) -> None:
    home = tmp_path / "subjectX"
    home.mkdir()
    (home / "sensors.csv").write_text("100,Bathroom,Toilet Flush \n101,Kitchen,Refrigerator\n"
                                      "102,Foyer,Door\n")
    (home / "activities_data.csv").write_text(
        "Toileting,4/1/2003,7:30:36,7:46:41\n100,101\nToilet Flush,Refrigerator\n"
        "7:39:37,7:40:46\n7:39:52,7:41:2\n"
        "Going out,4/31/2003,9:0:0,9:1:0\n102\nDoor\n9:0:10\n9:0:20\n")
    (h,) = load_homes(tmp_path, names=["subjectX"])
    assert [(r.kind, r.value) for r in h.readings][:2] == [("toilet_flush", "on"),
                                                           ("toilet_flush", "off")]
    door = [r for r in h.readings if r.kind == "door_contact"]
    assert door[0].time == datetime(2003, 5, 1, 9, 0, 10)  # "4/31" is the day after 4/30


def test_bad_files_say_where(tmp_path: Path) -> None:
    bad = tmp_path / "broken.csv"
    bad.write_text("time,sensor,room,kind,value\nyesterday,pir,,motion,on\n")
    with pytest.raises(ValueError, match=r"broken\.csv:2"):
        load_homes(bad)
    with pytest.raises(ValueError, match="no home found"):
        load_homes(tmp_path, names=["nobody"])
    odd = tmp_path / "odd.txt"
    odd.write_text("hello world\n")
    with pytest.raises(ValueError, match="not a home log"):
        load_homes(odd)


# --- the evaluation on a small home -------------------------------------------------------------


def _write_home(path: Path, days: int, trip: tuple[int, int] | None = None,
                seed: int = 1) -> None:
    """A tidy life: up about 07:00 (bed mat, bathroom, flush), kitchen, out every day
    (10:00-13:30) by the front door, movement every 20-40 min until about 21:30; `trip`: out
    from the morning of day a until the evening of day b."""
    rng = random.Random(seed)
    rows = ["time,sensor,room,kind,value"]
    start = datetime(2024, 3, 4)

    def add(t: datetime, sensor: str, kind: str, value: str = "on") -> None:
        rows.append(f"{t:%Y-%m-%d %H:%M:%S},{sensor},,{kind},{value}")

    for d in range(days):
        day = start + timedelta(days=d)
        if trip and trip[0] < d <= trip[1]:
            continue
        wake = day + timedelta(hours=7, minutes=rng.randint(-20, 20))
        add(wake, "bed", "bed", "off")
        add(wake + timedelta(minutes=2), "pir-bath", "motion")
        add(wake + timedelta(minutes=6), "wc", "flush")
        t = wake + timedelta(minutes=30)
        add(t, "fridge", "cupboard", "open")
        add(t + timedelta(seconds=20), "fridge", "cupboard", "closed")
        going_out = day + timedelta(hours=10)
        back = day + timedelta(hours=13, minutes=30)
        if trip and d == trip[0]:
            back = day + timedelta(days=trip[1] - trip[0], hours=18)
        while t < day + timedelta(hours=21, minutes=30):
            if going_out <= t < back:
                t = back
                add(back, "front", "door", "open")
                add(back + timedelta(seconds=15), "front", "door", "closed")
                continue
            add(t, "pir-living", "motion")
            t += timedelta(minutes=rng.randint(20, 40))
            if t >= going_out > t - timedelta(minutes=40) and back > going_out:
                add(going_out - timedelta(minutes=1), "pir-hall", "motion")
                add(going_out, "front", "door", "open")
                add(going_out + timedelta(seconds=20), "front", "door", "closed")
                t = going_out
        if not (trip and d == trip[0]):
            add(day + timedelta(hours=21, minutes=40), "bed", "bed", "on")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_eval_catches_silent_days_and_goes_out_without_alerting(tmp_path: Path) -> None:
    _write_home(tmp_path / "tidy.csv", days=15)
    (home,) = load_homes(tmp_path / "tidy.csv")
    result = evaluate_home(home, DetectorConfig(timezone=TZ), learn=7, every=2, seed=3)
    mornings = [o for o in result.outcomes if o.cut == "morning"]
    daytime = [o for o in result.outcomes if o.cut == "daytime"]
    assert len(mornings) == 2 and len(daytime) == 2
    for o in result.outcomes:  # every silent day caught, in time
        assert o.caught_at["eldercare"] is not None, o
        assert o.caught_at["eldercare"] <= o.deadline
    # Three and a half hours out every day by the front door: no false alert.
    assert result.false_alerts["eldercare"] == 0
    assert 6.5 <= result.usual_wake_h <= 7.5
    table = format_report(evaluate_homes([home], DetectorConfig(timezone=TZ), 7, 2, 3))
    assert "| tidy | eldercare | 2 / 2 | 2 / 2 |" in table and "timer_12h" in table


def test_a_trip_of_several_days_after_the_door_is_not_an_alert(tmp_path: Path) -> None:
    _write_home(tmp_path / "traveller.csv", days=14, trip=(9, 11))
    (home,) = load_homes(tmp_path / "traveller.csv")
    result = evaluate_home(home, DetectorConfig(timezone=TZ), learn=7, every=40)
    assert result.false_alerts["eldercare"] == 0
    assert result.false_alerts["timer_24h"] >= 1  # the classic timer cries wolf


def test_eval_command_prints_the_table(tmp_path: Path) -> None:
    _write_home(tmp_path / "tidy.csv", days=10)
    done = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "eval", "--dataset", "homes", str(tmp_path),
         "--every", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| total | eldercare |" in done.stdout and "wake_plus_2h" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "eval", "--dataset", "homes",
         str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no such file" in missing.stderr


# --- the detector's rules -----------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)  # 04:00 on Monday 2 March in Shanghai


def _ev(t: datetime, device: str, kind: str, type_: str, **data: object) -> CanonicalEvent:
    return CanonicalEvent(event_id=f"{device}/{t.timestamp()}", elder_id="E1", community_id="c",
                          device_id=device, device_kind=kind, type=type_, event_time=t,
                          received_at=t, data=data)


class Life:
    """Drives the detector through days: heartbeats every 30 min, timers every 5 min."""

    def __init__(self) -> None:
        self.d = InactivityDetector(DetectorConfig(timezone=TZ))
        self.state: InactivityState = self.d.initial()
        self.now = T0
        self.alerts: list[tuple[datetime, str]] = []
        self.profile = ElderProfile("E1", "c", lives_alone=True)

    def until(self, t: datetime, events: list[CanonicalEvent] | None = None) -> None:
        pending = sorted(events or [], key=lambda e: e.event_time)
        while self.now < t:
            self.now += timedelta(minutes=5)
            while pending and pending[0].event_time <= self.now:
                self.state = self.d.on_event(self.state, pending.pop(0), self.profile).state
            if self.now.minute % 30 == 0:
                hb = _ev(self.now, "hub", "motion_sensor", "heartbeat")
                self.state = self.d.on_event(self.state, hb, self.profile).state
            v = self.d.on_timer(self.state, self.now, self.profile)
            self.state = v.state
            self.alerts += [(self.now, a.evidence[0]["rule"]) for a in v.alerts]

    def day(self, n: int, wake_h: float = 7.0, until_h: float = 21.5,
            extra: list[CanonicalEvent] | None = None) -> list[CanonicalEvent]:
        """Movement every 20 min from `wake_h` to `until_h` (local) on day `n`."""
        base = T0 + timedelta(days=n) - timedelta(hours=4)  # local midnight of day n
        t, out = base + timedelta(hours=wake_h), list(extra or [])
        while t < base + timedelta(hours=until_h):
            out.append(_ev(t, "pir", "motion_sensor", "motion"))
            t += timedelta(minutes=20)
        return out


def test_a_late_riser_is_learned_within_days() -> None:
    life = Life()
    for n in range(5):
        life.until(T0 + timedelta(days=n + 1), life.day(n, wake_h=10.0, until_h=23.5))
    late = [a for a in life.alerts if a[0] >= T0 + timedelta(days=3)]
    assert late == [], late  # the first mornings may alert: a generic day starts at 07:00
    assert 9.5 <= life.d.usual_wake_h(life.state, life.profile) <= 10.5


def test_a_sensor_firing_all_night_does_not_hide_a_silent_morning() -> None:
    life = Life()
    noisy = [_ev(T0 + timedelta(days=n, minutes=5 * k) - timedelta(hours=4), "heater-pir",
                 "motion_sensor", "motion") for n in range(7) for k in range(78)]  # 00-06:30
    for n in range(6):
        life.until(T0 + timedelta(days=n + 1),
                   life.day(n, extra=[e for e in noisy if e.event_time.date() ==
                                      (T0 + timedelta(days=n) - timedelta(hours=4)).date()
                                      or T0 + timedelta(days=n) <= e.event_time
                                      < T0 + timedelta(days=n + 1)]))
    assert life.alerts == [] or max(a[0] for a in life.alerts) < T0 + timedelta(days=2)
    silent_day = T0 + timedelta(days=6)
    life.until(silent_day + timedelta(hours=6),
               [e for e in noisy if silent_day - timedelta(hours=4) <= e.event_time])
    rules = [(t, r) for t, r in life.alerts if t >= silent_day]
    assert rules and rules[0][1] == "no_wakeup"
    assert rules[0][0] <= silent_day + timedelta(hours=3 + 2)  # usual 07:00 + 2 h


def test_weak_evidence_alone_does_not_break_a_silence() -> None:
    life = Life()
    for n in range(3):
        life.until(T0 + timedelta(days=n + 1), life.day(n))
    # Day 4: up at 07:00, then only a plug cycling (a fridge on a smart plug) from 09:00.
    fourth = T0 + timedelta(days=3)
    morning = [e for e in life.day(3) if e.event_time < fourth + timedelta(hours=5)]
    plug = [_ev(fourth + timedelta(hours=5, minutes=30 * k), "plug", "smart_plug", "power",
                watts=90.0) for k in range(12)]
    life.until(fourth + timedelta(hours=12), morning + plug)
    assert [r for t, r in life.alerts if t >= fourth] == ["silence"]


def test_a_lie_in_is_reported_as_the_floor_of_false_alerts(tmp_path: Path) -> None:
    """A recorded day with nothing until past noon is, until the usual wake-up + 2 h, a silent
    morning: the report names it, and says that eldercare's one false alert is that day."""
    _write_home(tmp_path / "sleepy.csv", days=12)
    lines = (tmp_path / "sleepy.csv").read_text(encoding="utf-8").splitlines()
    late = [ln for ln in lines if not ("2024-03-14 04:00" <= ln[:16] < "2024-03-14 13:00")]
    (tmp_path / "sleepy.csv").write_text("\n".join(late) + "\n", encoding="utf-8")
    (home,) = load_homes(tmp_path / "sleepy.csv")
    result = evaluate_home(home, DetectorConfig(timezone=TZ), learn=7, every=40)
    assert result.false_alerts["lie_in_days"] == 1
    assert result.false_alerts["eldercare"] == result.false_alerts["eldercare_on_lie_ins"] == 1
    assert result.false_alerts["wake_plus_2h"] == 1  # the anchor alerts on it too
    table = format_report(evaluate_homes([home], DetectorConfig(timezone=TZ), 7, 40))
    assert "sleepy 1 (eldercare alerted 1)" in table


def test_simulated_homes_are_the_same_whatever_day_they_are_made(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`eval --dataset homes sim:...` gives figures that a later run reproduces: its days end
    at a fixed date, not today (the simulated week shifted by a day each day before)."""
    import time

    from simulators.evaluation import simulated_homes

    made = []
    for day in (0, 1, 3):
        monkeypatch.setattr(time, "time", lambda day=day: 1_790_000_000.0 + day * 86400)
        made.append([(h.name, h.readings[:50], len(h.readings))
                     for h in simulated_homes("sim:2:3")])
    assert made[0] == made[1] == made[2]
    assert made[0][0][2] > 0


def test_sweeps_that_skip_a_quiet_elder_give_the_verdicts_of_a_full_sweep() -> None:
    """The timer skips an elder whose state is unchanged until the next moment anything could
    change (an hour ending, a rule's time coming). Swept every minute through days of ordinary
    life, a silent morning, a silent afternoon, going out, a dead hub, time away and profile
    edits, it alerts exactly when, and with exactly what, a detector that recomputes every
    sweep (a new one per sweep: nothing remembered) does."""
    config = DetectorConfig(timezone=TZ)
    detector = InactivityDetector(config)
    state = detector.initial()
    profile = ElderProfile("E1", "c")
    rng = random.Random(5)
    events: list[CanonicalEvent] = []
    for n in range(9):
        base = T0 + timedelta(days=n) - timedelta(hours=4)  # local midnight of day n
        if n in (5, 8):
            continue  # a silent morning (and day)
        t = base + timedelta(hours=7, minutes=rng.randint(-30, 30))
        end = base + timedelta(hours=13 if n == 7 else 21)  # day 7: silent afternoon
        while t < end:
            if n == 3 and base + timedelta(hours=10) <= t < base + timedelta(hours=15):
                events.append(_ev(t, "front", "door_contact", "door", open=True))
                t = base + timedelta(hours=15)  # out for five hours
                events.append(_ev(t, "front", "door_contact", "door", open=True))
            events.append(_ev(t, "pir", "motion_sensor", "motion"))
            t += timedelta(minutes=rng.randint(10, 50))
    hub_dead = (T0 + timedelta(days=2, hours=8), T0 + timedelta(days=2, hours=14))
    profiles = {  # from this time on, this profile
        # An entered wake-up between hours: the wake-up rule's time is no hour's end.
        T0 + timedelta(days=4, hours=2): ElderProfile("E1", "c", lives_alone=True,
                                                      thresholds={"wake_h": 7.4}),
        T0 + timedelta(days=6, hours=1): ElderProfile("E1", "c", lives_alone=True, away=True),
        T0 + timedelta(days=6, hours=20): ElderProfile("E1", "c", lives_alone=True,
                                                       thresholds={"wake_h": 7.4}),
        T0 + timedelta(days=7, hours=3): ElderProfile(
            "E1", "c", thresholds={"wake_h": 7.4}, rearmed_at=T0 + timedelta(days=7)),
        # At 09:15 on the silent morning of day 8, staff note that the elder lives alone: the
        # rule's time for one living alone (09:09) has passed; the alert is due at once.
        T0 + timedelta(days=8, hours=5, minutes=15): ElderProfile(
            "E1", "c", lives_alone=True, thresholds={"wake_h": 7.4}),
    }
    now, seen, alerts = T0, 0, list[str]()
    while now < T0 + timedelta(days=9):
        now += timedelta(minutes=1)
        profile = next((p for t, p in sorted(profiles.items(), reverse=True) if t <= now),
                       profile)
        batch = [e for e in events[seen:] if e.event_time <= now]
        if now.minute % 30 == 0 and not hub_dead[0] <= now < hub_dead[1]:
            batch.append(_ev(now, "hub", "motion_sensor", "heartbeat"))
        seen += len([e for e in events[seen:] if e.event_time <= now])
        for event in batch:
            state = detector.on_event(state, event, profile).state
        full = InactivityDetector(config).on_timer(state, now, profile)
        verdict = detector.on_timer(state, now, profile)
        assert verdict.alerts == full.alerts, now
        assert verdict.state.model_dump() == full.state.model_dump(), now
        state = verdict.state
        alerts.extend(f"{a.evidence[0]['rule']} {now.astimezone(_tz()):%d %H:%M}"
                      for a in verdict.alerts)
    # The silent morning of day 5 (the entered 07:24 + 1.75 h for one living alone), the
    # silent afternoon of day 7, the silent morning of day 8 as soon as the profile changed;
    # nothing for the five hours out on day 3 nor the dead hub.
    assert alerts == ["no_wakeup 07 09:09", "silence 09 15:56", "no_wakeup 10 09:15"]
