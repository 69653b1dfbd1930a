"""Registry validation without services: phone numbers, ID numbers, contacts, ledger rows,
MQTT password hashes, rollup folding."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook
from pydantic import ValidationError

from devices import ledger_import, phones, provisioning
from devices.readings.history import rollups_of
from devices.records import ContactIn, ElderIn, StaffIn, mask_id_number

_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(first17: str) -> str:
    """A resident ID with a correct check digit (test data)."""
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, _W, strict=True)) % 11]


def test_phones_are_e164_and_know_whether_they_take_sms() -> None:
    assert phones.parse("13812345678") == ("+8613812345678", True)
    assert phones.parse("+86 10 6421 1234") == ("+861064211234", False)
    with pytest.raises(ValueError, match="not a valid number"):
        phones.parse("+861234")
    with pytest.raises(ValueError, match="not a phone number"):
        phones.parse("call me")


def test_contact_channels_follow_the_number() -> None:
    mobile = ContactIn(priority=1, name="王芳", phone="+8613812345678")
    assert (mobile.can_sms, mobile.channels) == (True, ["voice", "sms"])
    landline = ContactIn(priority=2, name="王强", phone="010-64211234")
    assert (landline.phone, landline.can_sms, landline.channels) == \
        ("+861064211234", False, ["voice"])
    with pytest.raises(ValidationError, match="fixed line and cannot receive SMS"):
        ContactIn(priority=2, name="王强", phone="+861064211234", channels=["sms"])


def test_elder_errors_name_the_field_and_say_why() -> None:
    good = resident_id("11010119400101123")
    typo = good[:17] + ("0" if good[17] != "0" else "1")
    with pytest.raises(ValidationError) as info:
        ElderIn(id="E 1", community_id="c-1", name="", id_number=typo,
                care_level="bedridden", phone="12")
    fields = {str(e["loc"][0]): e["msg"] for e in info.value.errors()}
    assert set(fields) == {"id", "name", "id_number", "care_level", "phone"}
    assert "check digit" in fields["id_number"]
    assert ElderIn(id="E1", community_id="c-1", name="李秀英", id_number=good).id_number == good
    assert mask_id_number(good) == "*" * 14 + good[-4:]


def test_staff_scope_needs_its_place() -> None:
    with pytest.raises(ValidationError, match="community_id is required"):
        StaffIn(id="s1", name="值班员", phone="+8613700000000")
    assert StaffIn(id="s2", name="督导", phone="13700000000", scope="street",
                   street="和平里街道", role="street_supervisor").phone == "+8613700000000"


def test_ledger_rows_are_checked_with_their_spreadsheet_row_numbers() -> None:
    book = Workbook()
    elders = book.active
    assert elders is not None
    elders.title = "老人"
    elders.append(["编号", "社区编号", "姓名", "电话", "独居", "照护等级"])
    elders.append(["E1", "c-1", "李秀英", 13812345678, "是", "self_care"])
    elders.append(["E2", "c-1", "", "abc", "也许", "self_care"])
    contacts = book.create_sheet("contacts")
    contacts.append(["elder_id", "priority", "name", "phone", "channels"])
    contacts.append(["E1", 1, "李明", "13912345678", "voice,sms"])
    contacts.append(["E1", 1, "李华", "13912345679", ""])
    out = io.BytesIO()
    book.save(out)
    records, errors = ledger_import.validate(ledger_import.read_ledger("l.xlsx", out.getvalue()))
    assert [(e.sheet, e.row, e.field) for e in errors] == [
        ("elders", 3, "name"), ("elders", 3, "phone"), ("elders", 3, "lives_alone"),
        ("contacts", 3, "priority")]
    assert records["elders"][0][1].phone == "+8613812345678"
    assert records["elders"][0][1].lives_alone is True


def test_csv_kind_is_guessed_from_the_header() -> None:
    text = "\ufeffid,kind,elder_id,room\nd1,sos_button,E1,卧室\nd2,toaster,E1,\n"
    sheets = ledger_import.read_ledger("devices.csv", text.encode())
    _, errors = ledger_import.validate(sheets)
    assert [(e.sheet, e.row, e.field) for e in errors] == [("devices", 3, "kind")]


def test_mqtt_hash_is_what_mosquitto_writes(tmp_path: Path) -> None:
    hashed = provisioning.hash_password("s3cret")
    assert hashed.startswith("$7$101$") and provisioning.verify_password("s3cret", hashed)
    assert not provisioning.verify_password("wrong", hashed)
    passwd = tmp_path / "p"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "u", "s3cret"], check=True)
    assert provisioning.verify_password("s3cret", passwd.read_text().strip().split(":", 1)[1])


def test_rollups_fold_fields_into_chart_points() -> None:
    hour = datetime(2026, 1, 1, 8, tzinfo=UTC)
    rows = [
        {"hour": hour, "type": "bp", "field": "", "n": 2, "sum": None, "min": None, "max": None},
        {"hour": hour, "type": "bp", "field": "systolic", "n": 2, "sum": 270.0, "min": 130.0,
         "max": 140.0},
    ]
    assert rollups_of(rows) == [{"hour": hour, "type": "bp", "count": 2,
                                 "avg": {"systolic": 135.0}, "min": {"systolic": 130.0},
                                 "max": {"systolic": 140.0}}]


def test_database_commands_say_when_no_database_is_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    for argv in (["registry", "import", "ledger.csv"], ["policy", "clear", "E1", "critical"],
                 ["staff", "demo"]):
        done = subprocess.run([sys.executable, "-m", "eldercare.cli", *argv], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "ELDERCARE_DATABASE_URL is not set" in done.stderr, argv
