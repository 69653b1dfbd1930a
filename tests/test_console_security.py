"""Pure logic of console access control: roles and scope, password hashing, demo logins, charts
(no services needed)."""

from __future__ import annotations

from console.accounts import demo_accounts
from foundation.security import SYSTEM, Principal, hash_password, verify_password


def test_scope_and_personal_data_follow_the_role() -> None:
    admin = Principal("a", "district_admin", None)
    street = Principal("s", "street_supervisor", frozenset({"c-1", "c-2"}))
    duty = Principal("d", "duty_staff", frozenset({"c-1"}))
    assert admin.can_see("c-9") and SYSTEM.can_see("c-9")
    assert street.can_see("c-2") and not street.can_see("c-3")
    assert duty.can_see("c-1") and not duty.can_see("c-2")
    assert admin.sees_personal_data and duty.sees_personal_data
    assert not street.sees_personal_data


def test_passwords_are_stored_as_argon2id_and_verified() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct hors")
    assert not verify_password(None, "anything")
    assert not verify_password("not-a-hash", "anything")


def test_demo_logins_cover_every_role() -> None:
    accounts = demo_accounts([("c-a", "甲社区", "东城区", "甲街道"),
                              ("c-b", "乙社区", "西城区", "乙街道")])
    assert [(a.username, a.role) for a in accounts] == [
        ("admin", "district_admin"), ("street", "street_supervisor"),
        ("a", "duty_staff"), ("b", "duty_staff"),
    ]
    assert accounts[1].street == "甲街道" and accounts[2].community_id == "c-a"


def test_pages_carry_the_platform_default_language() -> None:
    from fastapi.testclient import TestClient

    from console.app import create_app
    from foundation.config import Settings

    for language in ("en", "zh-Hans"):
        app = create_app(Settings(database_url="postgresql:///unused", language=language))
        page = TestClient(app).get("/login")  # no lifespan: no database needed for a page
        assert page.status_code == 200
        assert f'<html lang="{language}" data-default-lang="{language}">' in page.text
