"""Bulk import of a community's ledger from CSV or XLSX: elders, contacts and devices.

An XLSX workbook has up to three sheets named `elders`, `contacts`, `devices` (or 老人, 联系人,
设备); a CSV file holds one of them (named by `kind`, or guessed from its header). Headers may
be English field names or the usual Chinese column titles. Every row is checked first; if any
row is wrong, nothing is written and every wrong row is reported with its sheet, row number
(as the spreadsheet shows it) and field."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from devices import provisioning, registry
from devices.records import ContactIn, DeviceIn, ElderIn, RecordId
from devices.registry import AsyncConn
from foundation.security import Principal

KINDS = ("elders", "contacts", "devices")
_SHEET_ALIASES = {
    "老人": "elders", "联系人": "contacts", "紧急联系人": "contacts", "设备": "devices"}
_HEADER_ALIASES = {
    "编号": "id", "老人编号": "elder_id", "社区编号": "community_id", "姓名": "name",
    "身份证号": "id_number", "身份证号码": "id_number", "地址": "address", "住址": "address",
    "电话": "phone", "手机": "phone", "联系电话": "phone", "独居": "lives_alone",
    "照护等级": "care_level", "语言": "language", "病史": "medical_notes",
    "医疗备注": "medical_notes", "顺序": "priority", "优先级": "priority", "关系": "relation",
    "渠道": "channels", "设备编号": "id", "类型": "kind", "设备类型": "kind", "房间": "room",
    "序列号": "serial", "型号": "model", "固件": "firmware", "心跳间隔": "heartbeat_interval_s",
}
_TRUE = {"1", "true", "yes", "y", "是", "√"}
_FALSE = {"0", "false", "no", "n", "否", ""}


class ContactRow(ContactIn):
    elder_id: RecordId


_MODELS: dict[str, type[BaseModel]] = {
    "elders": ElderIn, "contacts": ContactRow, "devices": DeviceIn}


@dataclass(frozen=True)
class RowError:
    """What is wrong with one cell (or row) of the ledger."""

    sheet: str
    row: int
    field: str
    message: str

    def as_detail(self) -> dict[str, Any]:
        return {"loc": [self.sheet, self.row, self.field], "msg": self.message,
                "sheet": self.sheet, "row": self.row, "field": self.field}

    def __str__(self) -> str:
        return f"{self.sheet} row {self.row}, {self.field or '-'}: {self.message}"


class LedgerRejected(Exception):
    """The ledger had errors; nothing was imported."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


@dataclass
class ImportResult:
    counts: dict[str, int] = field(default_factory=dict)
    mqtt_logins: list[dict[str, str]] = field(default_factory=list)


Sheet = list[tuple[int, dict[str, str]]]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel keeps numbers as floats: 13812345678.0
    return str(value).strip()


def _rows(header: list[object], body: list[tuple[int, list[object]]]) -> Sheet:
    names = [_HEADER_ALIASES.get(_cell(h), _cell(h).lower()) for h in header]
    out: Sheet = []
    for number, values in body:
        cells = {n: _cell(v) for n, v in zip(names, values, strict=False) if n}
        if any(cells.values()):
            out.append((number, cells))
    return out


def _guess_kind(header: list[str]) -> str:
    names = {_HEADER_ALIASES.get(h.strip(), h.strip().lower()) for h in header}
    if "kind" in names:
        return "devices"
    if "priority" in names:
        return "contacts"
    return "elders"


def read_ledger(filename: str, content: bytes, kind: str = "") -> dict[str, Sheet]:
    """The ledger's sheets by kind, rows numbered as the spreadsheet numbers them."""
    name = filename.lower()
    if name.endswith(".xlsx"):
        from openpyxl import load_workbook

        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        sheets: dict[str, Sheet] = {}
        for ws in book.worksheets:
            sheet_kind = _SHEET_ALIASES.get(ws.title.strip(), ws.title.strip().lower())
            if sheet_kind not in KINDS:
                raise ValueError(f"sheet {ws.title!r}: expected one of {', '.join(KINDS)}")
            rows = list(ws.iter_rows(values_only=True))
            if rows:
                sheets[sheet_kind] = _rows(
                    list(rows[0]), [(i + 2, list(r)) for i, r in enumerate(rows[1:])])
        return sheets
    if name.endswith(".csv"):
        text = content.decode("utf-8-sig")  # Excel writes a BOM in front of UTF-8 CSV
        table = list(csv.reader(io.StringIO(text)))
        if not table:
            return {}
        sheet_kind = kind or _guess_kind(table[0])
        if sheet_kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        return {sheet_kind: _rows(list(table[0]),
                                  [(i + 2, list(r)) for i, r in enumerate(table[1:])])}
    raise ValueError("the file name must end in .csv or .xlsx")


def _typed(cells: dict[str, str]) -> dict[str, Any]:
    """Cells as the models want them: empty cells left to defaults, yes/no, channel lists."""
    out: dict[str, Any] = {}
    for key, value in cells.items():
        if value == "":
            continue
        if key == "lives_alone":
            low = value.lower()
            out[key] = True if low in _TRUE else False if low in _FALSE else value
        elif key == "channels":
            out[key] = [c.strip() for c in value.replace("，", ",").split(",") if c.strip()]
        else:
            out[key] = value
    return out


def validate(sheets: dict[str, Sheet]) -> tuple[dict[str, list[tuple[int, Any]]], list[RowError]]:
    """Every row as its record model, and every error (row-local checks only)."""
    records: dict[str, list[tuple[int, Any]]] = {k: [] for k in KINDS}
    errors: list[RowError] = []
    for kind in KINDS:
        seen: dict[object, int] = {}
        for number, cells in sheets.get(kind, []):
            try:
                record = _MODELS[kind].model_validate(_typed(cells))
            except ValidationError as exc:
                for e in exc.errors(include_url=False):
                    errors.append(RowError(kind, number, ".".join(map(str, e["loc"])),
                                           e["msg"].removeprefix("Value error, ")))
                continue
            key = (record.elder_id, record.priority) if isinstance(record, ContactRow) \
                else record.id  # type: ignore[attr-defined]
            if key in seen:
                errors.append(RowError(kind, number, "priority" if kind == "contacts" else "id",
                                       f"duplicate of row {seen[key]}"))
                continue
            seen[key] = number
            records[kind].append((number, record))
    return records, errors


async def _known(conn: AsyncConn, sql: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    rows = await (await conn.execute(sql, (keys,))).fetchall()
    return {r["id"]: r for r in rows}


async def import_ledger(
    conn: AsyncConn, filename: str, content: bytes, kind: str, principal: Principal,
) -> ImportResult:
    """Check the whole ledger, then write it in the caller's transaction; raise LedgerRejected
    (the caller's transaction then rolls back) when any row is wrong."""
    try:
        sheets = read_ledger(filename, content, kind)
    except Exception as exc:  # a broken file is one error, reported like the others
        raise LedgerRejected([RowError(kind or "file", 0, "", f"cannot read: {exc}")]) from None
    records, errors = validate(sheets)
    elders = records["elders"]
    communities = await _known(
        conn, "SELECT id, active FROM communities WHERE id = ANY(%s)",
        sorted({e.community_id for _, e in elders}))
    for number, e in elders:
        c = communities.get(e.community_id)
        if c is None or not principal.can_see(e.community_id):
            errors.append(RowError("elders", number, "community_id",
                                   f"no community {e.community_id!r}"))
        elif not c["active"]:
            errors.append(RowError("elders", number, "community_id",
                                   f"community {e.community_id!r} is deactivated"))
    in_file = {e.id for _, e in elders}
    wanted = sorted({r.elder_id for k in ("contacts", "devices") for _, r in records[k]})
    stored = await _known(conn, "SELECT id, community_id, active FROM elders WHERE id = ANY(%s)",
                          wanted)
    for k in ("contacts", "devices"):
        for number, r in records[k]:
            s = stored.get(r.elder_id)
            if r.elder_id in in_file:
                continue
            if s is None or not principal.can_see(s["community_id"]):
                errors.append(RowError(k, number, "elder_id",
                                       f"no elder {r.elder_id!r} in this file or the registry"))
            elif not s["active"]:
                errors.append(RowError(k, number, "elder_id",
                                       f"elder {r.elder_id!r} is deactivated"))
    # Rows that update an existing elder or device must stay inside the importer's scope: an id
    # that belongs to a community the importer cannot see is refused (without saying whose).
    existing = await _known(conn, "SELECT id, community_id FROM elders WHERE id = ANY(%s)",
                            sorted(in_file))
    for number, e in elders:
        s = existing.get(e.id)
        if s is not None and not principal.can_see(s["community_id"]):
            errors.append(RowError("elders", number, "id", f"elder id {e.id!r} is taken"))
    owned = await _known(
        conn, "SELECT d.id, e.community_id FROM devices d JOIN elders e ON e.id = d.elder_id"
        " WHERE d.id = ANY(%s)", sorted({d.id for _, d in records["devices"]}))
    for number, d in records["devices"]:
        s = owned.get(d.id)
        if s is not None and not principal.can_see(s["community_id"]):
            errors.append(RowError("devices", number, "id", f"device id {d.id!r} is taken"))
    if errors:
        raise LedgerRejected(sorted(errors, key=lambda e: (KINDS.index(e.sheet)
                                                           if e.sheet in KINDS else -1, e.row)))
    return await _write(conn, records)


async def _write(conn: AsyncConn, records: dict[str, list[tuple[int, Any]]]) -> ImportResult:
    result = ImportResult()
    for _, e in records["elders"]:
        await registry.write_elder(conn, e, replace=True)
    for _, c in records["contacts"]:
        await registry.write_contact(conn, c.elder_id, ContactIn.model_validate(
            c.model_dump(exclude={"elder_id", "can_sms"})), replace=True)
    for _, d in records["devices"]:
        await registry.write_device(conn, d, replace=True)
    # New devices get an MQTT login; its password is in this answer only.
    ids = [d.id for _, d in records["devices"]]
    missing = await (await conn.execute(
        "SELECT d.id, e.community_id FROM devices d JOIN elders e ON e.id = d.elder_id"
        " WHERE d.id = ANY(%s) AND d.id NOT IN (SELECT device_id FROM device_credentials)"
        " ORDER BY d.id", (ids,))).fetchall()
    for row in missing:
        password, hashed = provisioning.new_credentials()
        await conn.execute(provisioning.ISSUE_SQL, (row["id"], hashed))
        result.mqtt_logins.append({
            "username": provisioning.device_username(row["id"]), "password": password,
            "topic_prefix": provisioning.device_topic_prefix(row["community_id"], row["id"])
            + "/"})
    result.counts = {k: len(v) for k, v in records.items()}
    return result
