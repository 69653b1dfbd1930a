"""Real homes' sensor logs, read into one shape: a home is its sensor readings in local time
(plus any labelled away periods), and each reading becomes the canonical event the platform's
own device of that kind would have sent.

Formats read (see docs/inactivity.md):
- the documented CSV: a header `time,sensor,room,kind,value` (ISO 8601 local times, `kind` a
  device kind or a plain word such as motion, door, bed, flush, plug, water, cupboard);
- CASAS-style lines `date time sensor value [...]` (ids starting M: motion, D: door, I: item;
  temperature and light levels are not activity);
- per-sensor start/end tables: lines `start end sensor [room] [kind]`, each an activation
  (an Ordonez-style `Start time  End time  Location  Type  Place` table reads as one);
- the MIT PlaceLab layout: a folder with `sensors.csv` and `activities_data.csv`.
Away periods: a file `NAME.away.csv` next to `NAME.*` (or `away.csv` in a home's folder) with
lines `start,end`. Sensor names for logs that give only ids: `NAME.sensors.csv` with lines
`id,description[,room][,kind]`."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from devices.catalogue import DeviceKind
from foundation.contracts.events import CanonicalEvent


@dataclass(frozen=True)
class Reading:
    """One line of a home's log: a sensor changed (or reported a value) at a local time."""

    time: datetime   # naive, the home's local time
    sensor: str
    room: str
    kind: str        # a DeviceKind value; "" for what is not a person's activity
    value: str


@dataclass
class Home:
    name: str
    readings: list[Reading]
    away: list[tuple[datetime, datetime]] = field(default_factory=list)  # naive local


ON = frozenset({"on", "1", "true", "open", "opened", "occupied", "active", "present", "yes"})
# A word in a sensor's name, room or type -> the kit's device kind (first match wins).
KIND_WORDS: list[tuple[str, DeviceKind | None]] = [
    (r"temp|light ?level|lux|humid|battery|\blight sensor", None),
    (r"pir|motion|movement", DeviceKind.MOTION_SENSOR),
    (r"main ?door|front ?door|entrance|exit|foyer.*door|door.*(foyer|hall|entr)",
     DeviceKind.DOOR_CONTACT),
    (r"pressure|\bbed\b|seat|chair|couch|sofa|mat\b", DeviceKind.PRESSURE_MAT),
    (r"flush|toilet", DeviceKind.TOILET_FLUSH),
    (r"faucet|shower|water|tap\b|sink", DeviceKind.WATER_FLOW),
    (r"electric|plug|power|toaster|microwave|kettle|\btv\b|dvd|burner|oven|coffee|washing|"
     r"dishwasher|dryer|lamp|light|fan\b|disposal|stereo|radio|iron", DeviceKind.SMART_PLUG),
    (r"cabinet|cupboard|drawer|fridge|refrigerator|freezer|closet|container|box|cereal|"
     r"magnetic|reed|contact|door|window|item", DeviceKind.CUPBOARD_CONTACT),
]
KIND_ALIASES = {"motion": "motion_sensor", "pir": "motion_sensor", "door": "door_contact",
                "bed": "pressure_mat", "chair": "pressure_mat", "occupancy": "pressure_mat",
                "flush": "toilet_flush", "toilet": "toilet_flush", "plug": "smart_plug",
                "power": "smart_plug", "appliance": "smart_plug", "water": "water_flow",
                "cupboard": "cupboard_contact", "fridge": "cupboard_contact",
                "contact": "cupboard_contact", "ignore": "", "other": ""}
_KINDS = {k.value for k in DeviceKind}
_DT = re.compile(r"(\d{4}-\d{1,2}-\d{1,2}[ T]\d{1,2}:\d{1,2}(?::\d{1,2}(?:\.\d+)?)?"
                 r"|\d{1,2}-[A-Za-z]{3}-\d{4} \d{1,2}:\d{1,2}:\d{1,2}"
                 r"|\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{1,2}(?::\d{1,2})?)")


# Files in a folder of homes that are not sensor logs: read-me files and activity labels.
NOT_A_LOG = re.compile(r"(?i)^readme|^\.|(^|[_. -])adls?([_. -]|$)|activit|label|annotation")


def guess_kind(*words: str) -> str:
    """The device kind a sensor described by these words is, "" if not a person's activity."""
    text = " ".join(words).lower()
    for pattern, kind in KIND_WORDS:
        if re.search(pattern, text):
            return kind.value if kind else ""
    return DeviceKind.MOTION_SENSOR.value if text.strip() else ""


def kind_of(word: str) -> str:
    """A documented CSV's `kind` column: a device kind, an alias, or words to guess from."""
    w = word.strip().lower()
    if w in _KINDS:
        return w
    if w in KIND_ALIASES:
        return KIND_ALIASES[w]
    return guess_kind(w)


def parse_time(text: str) -> datetime:
    """A local time as the public datasets write it (ISO, `25-Feb-2008 00:20:14`, US dates)."""
    s = text.strip()
    us = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{1,2})(?::(\d{1,2}))?", s)
    if us:  # lenient: PlaceLab writes "4/31/2003" for the day after 4/30
        mo, d, y, h, mi, sec = (int(x or 0) for x in us.groups())
        return datetime(y, mo, 1, h, mi, sec) + timedelta(days=d - 1)
    for fmt in ("%d-%b-%Y %H:%M:%S",):
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            pass
    t = datetime.fromisoformat(s.replace("T", " "))
    return t.replace(tzinfo=None) if t.tzinfo is None else t


def load_csv(path: Path) -> list[Reading]:
    """The documented CSV: time,sensor,room,kind,value (room, kind and value may be empty)."""
    out = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                t = parse_time(row["time"])
                sensor = row["sensor"].strip()
            except (KeyError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path}:{n}: needs time and sensor ({exc})") from exc
            room = (row.get("room") or "").strip()
            kind_text = (row.get("kind") or "").strip()
            kind = kind_of(kind_text) if kind_text else guess_kind(sensor, room)
            out.append(Reading(t, sensor, room, kind, (row.get("value") or "on").strip()))
    return out


def _casas_kind(sensor: str) -> str:
    s = sensor.upper()
    if re.match(r"^(M|MA)\d", s):
        return DeviceKind.MOTION_SENSOR.value
    if re.match(r"^D\d", s):
        return DeviceKind.DOOR_CONTACT.value
    if re.match(r"^I\d", s):
        return DeviceKind.CUPBOARD_CONTACT.value
    if re.match(r"^(T|L|LS|P|E|AD|BAT)\d", s):
        return ""  # temperature, light level, whole-home power, analog: not a person's act
    return guess_kind(sensor)


def load_casas(path: Path) -> list[Reading]:
    """CASAS-style `date time sensor value [annotation...]` lines, whitespace separated."""
    out = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 4:
                raise ValueError(f"{path}:{n}: expected `date time sensor value`")
            try:
                t = parse_time(f"{parts[0]} {parts[1]}")
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: bad time {parts[0]} {parts[1]!r}") from exc
            out.append(Reading(t, parts[2], "", _casas_kind(parts[2]), parts[3]))
    return out


def load_intervals(path: Path) -> list[Reading]:
    """Per-sensor start/end tables: each line two times, then the sensor's words (name,
    location, type, place); each row is an activation from start to end."""
    out = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            times = list(_DT.finditer(line))
            if len(times) < 2:
                continue  # a header or a ruler line
            start, end = parse_time(times[0].group()), parse_time(times[1].group())
            rest = line[times[1].end():]
            words = [w.strip() for w in re.split(r"[\t,;]|\s{2,}", rest) if w.strip()]
            if not words:
                raise ValueError(f"{path}:{n}: no sensor after the two times")
            sensor = " ".join(words[:2]) if len(words) > 1 else words[0]
            room = words[2] if len(words) > 2 else ""
            kind = guess_kind(*words)
            if end < start:
                raise ValueError(f"{path}:{n}: ends before it starts")
            out.append(Reading(start, sensor, room, kind, "on"))
            out.append(Reading(end, sensor, room, kind, "off"))
    return out


def load_placelab(folder: Path) -> list[Reading]:
    """MIT PlaceLab (Tapia et al. 2004): sensors.csv (id, room, object) and activities_data.csv
    (per labelled activity: sensor ids, objects, activation and deactivation times)."""
    sensors: dict[str, tuple[str, str]] = {}
    with (folder / "sensors.csv").open(encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 3 and row[0].strip().isdigit():
                sensors[row[0].strip()] = (row[1].strip(), row[2].strip())
    lines = (folder / "activities_data.csv").read_text(encoding="utf-8", errors="replace")
    rows = [r for r in csv.reader(lines.splitlines())]
    seen: set[tuple[str, datetime]] = set()
    out = []
    i = 0
    while i + 4 < len(rows) + 1 and i < len(rows):
        head = rows[i]
        if len(head) < 4 or "/" not in head[1]:
            i += 1
            continue
        date = head[1].strip()
        ids, starts, ends = rows[i + 1], rows[i + 3], rows[i + 4]
        for sid, a, b in zip(ids, starts, ends, strict=False):
            sid = sid.strip()
            if not sid:
                continue
            room, obj = sensors.get(sid, ("", sid))
            start = parse_time(f"{date} {a.strip()}")
            end = parse_time(f"{date} {b.strip()}")
            if end < start:
                end += timedelta(days=1)
            if (sid, start) in seen:  # the same activation listed under two activities
                continue
            seen.add((sid, start))
            kind = guess_kind(obj, room)
            out.append(Reading(start, f"{sid} {obj}", room, kind, "on"))
            out.append(Reading(end, f"{sid} {obj}", room, kind, "off"))
        i += 5
    return out


def load_away(path: Path) -> list[tuple[datetime, datetime]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or parts[0].lower() in ("start", ""):
            continue
        try:
            out.append((parse_time(parts[0]), parse_time(parts[1])))
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: expected `start,end` ({exc})") from exc
    return out


def load_sensor_names(path: Path) -> dict[str, tuple[str, str, str]]:
    """`NAME.sensors.csv`: lines `id,description[,room][,kind]` naming a log's sensor ids (for
    tables that give only numbers)."""
    out: dict[str, tuple[str, str, str]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not cells or not cells[0] or cells[0].lower() in ("id", "sensor"):
                continue
            if len(cells) < 2:
                raise ValueError(f"{path}:{n}: expected `id,description[,room][,kind]`")
            room = cells[2] if len(cells) > 2 else ""
            kind = kind_of(cells[3]) if len(cells) > 3 and cells[3] else guess_kind(cells[1], room)
            out[cells[0]] = (cells[1], room, kind)
    return out


def name_sensors(readings: list[Reading], names: dict[str, tuple[str, str, str]]
                 ) -> list[Reading]:
    """The readings with their sensors named (matched on the id, or its first word)."""
    out = []
    for r in readings:
        named = names.get(r.sensor) or names.get(r.sensor.split(" ")[0])
        if named is None:
            out.append(r)
            continue
        desc, room, kind = named
        out.append(Reading(r.time, f"{r.sensor.split(' ')[0]} {desc}", room or r.room, kind,
                           r.value))
    return out


def sniff(path: Path) -> str:
    """Which format a file is: csv, casas or intervals."""
    with path.open(encoding="utf-8", errors="replace") as f:
        lines = [ln for ln in (f.readline() for _ in range(20)) if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: empty")
    head = lines[0].lower().replace(" ", "")
    if head.startswith("time,") and "sensor" in head:
        return "csv"
    for ln in lines:
        if len(_DT.findall(ln)) >= 2:
            return "intervals"
        if re.match(r"^\d{4}-\d{1,2}-\d{1,2}\s+\d{1,2}:\d{2}", ln):
            return "casas"
    raise ValueError(f"{path}: not a home log this loader knows (csv, casas, intervals)")


def load_home(path: Path, fmt: str | None = None) -> Home:
    """One home from a file or a PlaceLab folder, with its away periods if labelled."""
    if path.is_dir():
        if not (path / "activities_data.csv").exists():
            raise ValueError(f"{path}: a folder home needs activities_data.csv and sensors.csv")
        readings, away_file = load_placelab(path), path / "away.csv"
    else:
        kind = fmt or sniff(path)
        loader = {"csv": load_csv, "casas": load_casas, "intervals": load_intervals}.get(kind)
        if loader is None:
            raise ValueError(f"unknown format {kind!r} (csv, casas, intervals)")
        stem = path.name.split(".")[0]
        readings, away_file = loader(path), path.with_name(stem + ".away.csv")
        names_file = path.with_name(stem + ".sensors.csv")
        if names_file.exists():
            readings = name_sensors(readings, load_sensor_names(names_file))
    readings.sort(key=lambda r: r.time)
    if not readings:
        raise ValueError(f"{path}: no readings")
    away = load_away(away_file) if away_file.exists() else []
    return Home(path.name.split(".")[0], readings, away)


def load_homes(path: Path, names: list[str] | None = None, days: float | None = None,
               fmt: str | None = None) -> list[Home]:
    """Every home under `path` (a file, a home folder, or a folder of them), optionally only
    those `names` and only their first `days` days."""
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_file() or (path / "activities_data.csv").exists():
        candidates = [path]
    else:
        candidates = sorted(p for p in path.iterdir()
                            if (p.is_dir() and (p / "activities_data.csv").exists())
                            or (p.is_file() and not p.name.endswith((".away.csv",
                                                                     ".sensors.csv"))
                                and not NOT_A_LOG.search(p.name)
                                and p.suffix in ("", ".csv", ".txt", ".dat", ".log")))
    homes = []
    for p in candidates:
        if names and p.name.split(".")[0] not in names:
            continue
        home = load_home(p, fmt)
        if days is not None:
            end = home.readings[0].time + timedelta(days=days)
            home.readings = [r for r in home.readings if r.time < end]
        homes.append(home)
    if not homes:
        raise ValueError(f"{path}: no home found" + (f" named {names}" if names else ""))
    return homes


def to_events(home: Home, tz: ZoneInfo, elder_id: str | None = None) -> list[CanonicalEvent]:
    """The canonical events the kit would have sent (what is not activity is left out)."""
    elder = elder_id or f"home-{home.name}"
    out = []
    for n, r in enumerate(home.readings):
        typed = _event_type(r)
        if typed is None:
            continue
        type_, data = typed
        t = r.time.replace(tzinfo=tz) if r.time.tzinfo is None else r.time
        device = f"{elder}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', r.sensor)}"[:64]
        out.append(CanonicalEvent(
            event_id=f"{device}/{n}", elder_id=elder, community_id="homes", device_id=device,
            device_kind=r.kind, room=r.room or None, type=type_, event_time=t, received_at=t,
            data=data, source="replay"))
    return out


def _event_type(r: Reading) -> tuple[str, dict[str, object]] | None:
    on = r.value.strip().lower() in ON
    number = _number(r.value)
    if r.kind == DeviceKind.MOTION_SENSOR.value:
        return ("motion", {}) if on else None
    if r.kind == DeviceKind.DOOR_CONTACT.value:
        return "door", {"open": on}
    if r.kind == DeviceKind.PRESSURE_MAT.value:
        return "occupancy", {"occupied": on}
    if r.kind == DeviceKind.TOILET_FLUSH.value:
        return ("flush", {}) if on else None
    if r.kind == DeviceKind.SMART_PLUG.value:
        return "power", {"watts": number if number is not None else (100.0 if on else 0.0)}
    if r.kind == DeviceKind.WATER_FLOW.value:
        return "water", {"flow": number if number is not None else (6.0 if on else 0.0)}
    if r.kind == DeviceKind.CUPBOARD_CONTACT.value:
        return "contact", {"open": on}
    return None


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if x not in (0.0, 1.0) else None  # 0/1 are states, not readings
