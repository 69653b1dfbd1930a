"""Real services for the tests: PostgreSQL, tansu (Kafka protocol), mosquitto, and the Prism
mock of Twilio. Started once per session; every test makes its own elders and devices."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from devices.catalogue import DeviceKind
from devices.registry import Community, Contact, Device, Elder, Staff, save
from eldercare.stack import embedded
from foundation import db, kafka, observability, procs
from foundation.config import Settings, child_env
from tests import twilio_mock
from tests.helpers import eventually

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Debian's Chromium, headless; never a browser of Playwright's own (none can be downloaded).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium, one per test module."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def infra(workdir: Path) -> Iterator[Settings]:
    """Real PostgreSQL, Kafka-protocol broker and MQTT broker; migrated and with topics."""
    started = [embedded.start_postgres(workdir), embedded.start_kafka(workdir),
               embedded.start_mqtt(workdir)]
    pg, kf, mq = started
    assert mq.extra["broker"] == "mosquitto", "tests need mosquitto (make test installs it)"
    settings = Settings(
        database_url=pg.url, kafka_bootstrap=kf.url, mqtt_url=mq.url, data_dir=workdir,
        mqtt_auth_dir=mq.extra["auth_dir"], mqtt_device_url=mq.extra["device_url"],
        console_bind=f"127.0.0.1:{procs.free_port()}",
        ingest_http_bind=f"127.0.0.1:{procs.free_port()}",
        metrics_binds=observability.local_binds(),
    )
    db.upgrade(settings.database_url)
    asyncio.run(kafka.ensure_topics(settings))
    yield settings
    for svc in reversed(started):
        svc.stop()


@pytest.fixture(scope="session")
def twilio(workdir: Path) -> Iterator[twilio_mock.TwilioMock]:
    mock, prism, server = twilio_mock.start(workdir)
    yield mock
    server.should_exit = True
    procs.stop(prism)


@pytest.fixture(scope="session")
def settings(infra: Settings, twilio: twilio_mock.TwilioMock) -> Settings:
    """Infra plus Twilio configured against the mock, and a webhook base URL."""
    port = infra.console_port
    return infra.model_copy(update={
        "notify": "twilio",
        "twilio_account_sid": "AC" + "0123456789abcdef" * 2,
        "twilio_auth_token": "test-auth-token",
        "twilio_from_number": "+15017122661",
        "twilio_api_base_url": twilio.url,
        "public_base_url": f"http://127.0.0.1:{port}",
    })


@contextlib.contextmanager
def eldercare_up(settings: Settings, log_path: Path, env: dict[str, str] | None = None,
                 timeout: float = 60) -> Iterator[Settings]:
    """`eldercare up` as a user runs it, with `settings` (plus `env`); yields once the console
    answers /healthz, and stops it with Ctrl-C (SIGINT) afterwards."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "eldercare.cli", "up"],
                                env={**child_env(settings), **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT)

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    r = await client.get(f"http://{settings.console_bind}/healthz", timeout=5)
                    return r.status_code == 200
            except httpx.HTTPError:
                return False

        try:
            asyncio.run(eventually(healthy, timeout, f"console /healthz ({log_path})"))
            yield settings
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def platform(settings: Settings, workdir: Path) -> Iterator[Settings]:
    """`eldercare up` as a user runs it, against the session's services."""
    with eldercare_up(settings, workdir / "up.log") as running:
        yield running


def make_community(tag: str | None = None, elders: int = 1, contacts: int = 3) -> Community:
    """A fresh community with `elders` elders, each with the standard kit and contacts."""
    tag = tag or uuid.uuid4().hex[:8]
    cid = f"c-{tag}"
    people = []
    for n in range(1, elders + 1):
        eid = f"E-{tag}-{n}"
        people.append(Elder(
            eid, cid, f"测试老人{n}", f"测试路{n}号", lives_alone=True,
            contacts=[Contact(p, f"联系人{p}", "女儿", _phone("138", tag, n, p))
                      for p in range(1, contacts + 1)],
            devices=[Device(f"{eid}-{k.value}", k, "卧室") for k in DeviceKind],
        ))
    return Community(cid, f"测试社区{tag}", "测试区", "测试街道", "+861012345678", people,
                     [Staff(f"{cid}-duty", cid, "值班员", _phone("137", tag))])


def _phone(prefix: str, *parts: object) -> str:
    """A distinct, valid-looking Chinese mobile number per test person."""
    digest = int(hashlib.sha256(repr(parts).encode()).hexdigest(), 16)
    return f"+86{prefix}{digest % 10**8:08d}"


@pytest.fixture(scope="module")
def home(infra: Settings) -> Community:
    """A fresh community shared by the tests of one module (the ingest tests' devices)."""
    c = make_community()
    save(infra.database_url, [c])
    return c


@pytest.fixture
def community(infra: Settings) -> Community:
    c = make_community()
    save(infra.database_url, [c])
    return c


@pytest.fixture
async def admin_http(
    platform: Settings, admin_login: tuple[str, str],
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the console/admin API logged in as a district administrator: it carries
    the session cookie and sends the CSRF header. Use it for every API call in tests."""
    async with httpx.AsyncClient(base_url=platform.public_base_url, timeout=10) as client:
        await staff_login(client, *admin_login)
        yield client


@pytest.fixture(scope="session")
def admin_login(infra: Settings) -> tuple[str, str]:
    """(username, password) of a district admin account made for this test session."""
    from console.accounts import Account, create_account

    username, password = f"admin-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    create_account(infra.database_url, Account(username, "测试区管理员", "district_admin"),
                   password)
    return username, password


async def staff_login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, Any]:
    """Log `client` in: it keeps the session cookie and sends X-CSRF-Token from now on."""
    r = await client.post("/api/v1/login", json={"username": username, "password": password})
    r.raise_for_status()
    me: dict[str, Any] = r.json()
    client.headers["X-CSRF-Token"] = me["csrf_token"]
    return me
