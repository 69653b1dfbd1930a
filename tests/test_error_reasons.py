"""Every reason the registry gives for refusing a value has a code with its parameters, and
each code has its sentence in both locales (Simplified Chinese first): the console shows
`errors.<code>` with the parameters filled in, and the English message stays the API's `msg`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from devices import ledger_import
from devices.records import ContactIn, ElderIn
from foundation.i18n import catalogue, t

ROOT = Path(__file__).resolve().parents[1]
# Where registry reasons are raised: the records, phones, the ledger import, the admin API, and
# the console's own record routes and error handlers.
SOURCES = [*sorted((ROOT / "devices").rglob("*.py")), ROOT / "console" / "registry_routes.py",
           ROOT / "console" / "app.py"]
# pydantic's own error types the record pages meet most (int fields, text limits, choices...).
BUILT_IN = ["missing", "extra_forbidden", "string_type", "string_too_short", "string_too_long",
            "string_pattern_mismatch", "int_parsing", "int_type", "float_parsing",
            "bool_parsing", "literal_error", "enum", "value_error", "greater_than",
            "greater_than_equal", "less_than", "less_than_equal", "datetime_parsing",
            "time_parsing", "list_type", "too_short", "too_long", "json_invalid"]
CJK = re.compile(r"[\u4e00-\u9fff]")


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def raised_codes() -> dict[str, set[str]]:
    """Every error code written in the sources, with the parameter names passed along."""
    # The code's position in each call that makes a reason: reason(code, message, **params),
    # PydanticCustomError(code, message, params), RowError.of(sheet, row, field, code, ...),
    # field_error(status, field, code, message, **params).
    positions = {"reason": 0, "PydanticCustomError": 0, "of": 3, "field_error": 2}
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and _name(node.func) in positions:
                at = positions[_name(node.func)]
                if len(node.args) > at and isinstance(node.args[at], ast.Constant):
                    found.setdefault(str(node.args[at].value), set()).update(
                        k.arg for k in node.keywords if k.arg)
            elif isinstance(node, ast.Dict):  # a detail as a dict: {"type": code, "ctx": {...}}
                items = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                         if isinstance(k, ast.Constant)}
                code, ctx = items.get("type"), items.get("ctx")
                if isinstance(code, ast.Constant) and str(code.value).replace("_", "").isalpha():
                    found.setdefault(str(code.value), set()).update(
                        str(k.value) for k in (ctx.keys if isinstance(ctx, ast.Dict) else [])
                        if isinstance(k, ast.Constant))
    return found


def placeholders(template: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", template))


def test_the_scan_finds_the_codes_of_every_kind_of_source() -> None:
    codes = raised_codes()
    assert {"phone_invalid", "id_number_check_digit", "ledger_duplicate_row", "no_community",
            "priority_taken", "contact_order_incomplete", "invalid_value"} <= set(codes)
    assert codes["phone_invalid"] == {"raw"}


@pytest.mark.parametrize("code", sorted(raised_codes()))
def test_every_raised_code_reads_in_both_languages(code: str) -> None:
    params = raised_codes()[code]
    zh, en = catalogue("zh-Hans").get(f"errors.{code}"), catalogue("en").get(f"errors.{code}")
    assert zh and en, f"errors.{code} missing from a locale"
    assert CJK.search(zh), f"errors.{code} is not Chinese in zh-Hans.json"
    # A placeholder with no parameter would print as an empty gap.
    assert placeholders(zh) <= params and placeholders(en) <= params, code


@pytest.mark.parametrize("code", BUILT_IN)
def test_pydantic_common_errors_read_in_both_languages(code: str) -> None:
    assert CJK.search(catalogue("zh-Hans")[f"errors.{code}"])
    assert catalogue("en")[f"errors.{code}"]


def test_a_refused_record_says_why_by_code_and_in_english() -> None:
    with pytest.raises(ValidationError) as info:
        ElderIn(id="E1", community_id="c-1", name="李秀英", id_number="110105194912310021",
                phone="12345")
    by_field = {str(e["loc"][0]): e for e in info.value.errors()}
    assert by_field["id_number"]["type"] == "id_number_check_digit"
    assert "check digit" in by_field["id_number"]["msg"]  # the API's English msg is unchanged
    phone = by_field["phone"]
    assert (phone["type"], phone["ctx"]) == ("phone_invalid", {"raw": "12345"})
    assert t("errors.phone_invalid", **phone["ctx"]) == \
        "“12345”不是有效的电话号码，请核对位数和区号"
    assert t("errors.phone_invalid", "en", **phone["ctx"]).startswith("'12345' is not a valid")
    with pytest.raises(ValidationError) as landline:
        ContactIn(priority=1, name="王强", phone="010-64211234", channels=["sms"])
    [error] = landline.value.errors()
    assert error["type"] == "fixed_line_no_sms" and error["ctx"] == {"phone": "+861064211234"}


def test_ledger_rows_carry_the_code_and_its_parameters() -> None:
    records, errors = ledger_import.validate({
        "contacts": [(2, {"elder_id": "E1", "priority": "1", "name": "赵军", "phone": "12345"}),
                     (3, {"elder_id": "E1", "priority": "x", "name": "赵丽",
                          "phone": "13812345678"})],
        "elders": [(2, {"id": "E1", "community_id": "c", "name": "赵桂兰"}),
                   (3, {"id": "E1", "community_id": "c", "name": "钱玉珍"})]})
    details = [e.as_detail() for e in errors]
    assert [(d["sheet"], d["row"], d["field"], d["type"], d["ctx"]) for d in details] == [
        ("elders", 3, "id", "ledger_duplicate_row", {"first": 2}),
        ("contacts", 2, "phone", "phone_invalid", {"raw": "12345"}),
        ("contacts", 3, "priority", "int_parsing", {})]
    assert details[0]["msg"] == "duplicate of row 2"
    assert t("errors.ledger_duplicate_row", **details[0]["ctx"]) == "与第 2 行重复"
    assert len(records["elders"]) == 1
