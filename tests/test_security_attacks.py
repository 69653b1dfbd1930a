"""Issue 15's attacks on devices, the gateways and the webhooks, tried as an attacker would
against the real services (mosquitto, the HTTP gateway, the webhooks). Each test fails if its
attack works again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from twilio.request_validator import RequestValidator

from devices import provisioning
from devices.registry import Community, save
from eldercare.stack import embedded
from foundation import kafka, procs
from foundation.config import Settings, child_env
from foundation.masking import mask_log_event, mask_phone, mask_text, mask_url
from foundation.mqtt import MqttTarget, event_topic
from ingest.mqtt_session import client_id
from tests.conftest import make_community
from tests.helpers import eventually, read_topic
from tests.test_ingest_service import start_run
from tests.twilio_mock import TwilioMock


async def _community_with_elder(http: httpx.AsyncClient) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    cid, eid = f"c-{tag}", f"E-{tag}"
    assert (await http.post("/api/v1/communities", json={"id": cid, "name": f"社区{tag}"})
            ).status_code == 201
    assert (await http.post("/api/v1/elders", json={"id": eid, "community_id": cid,
                                                    "name": "周桂兰"})).status_code == 201
    return cid, eid


ROOT = Path(__file__).resolve().parents[1]


def make_certs(out: Path) -> None:
    """A CA and server certificate, as the deployment documentation makes them."""
    subprocess.run(["sh", str(ROOT / "deploy" / "make-certs.sh"), str(out)], check=True,
                   capture_output=True, timeout=120)


async def _logs_in(url: str, username: str, password: str) -> bool:
    """True when the broker at `url` accepts the login (the URL's own one when `username` is
    empty)."""
    target = MqttTarget.parse(url)
    try:
        async with aiomqtt.Client(target.host, target.port, username=username or target.username,
                                  password=password or target.password, timeout=5,
                                  tls_context=target.tls_context()):
            return True
    except aiomqtt.MqttError:
        return False


def _sos(msg_id: str, ts: float | None = None) -> bytes:
    return json.dumps({"msg_id": msg_id, "ts": ts or time.time(), "type": "sos"}).encode()


def _stored(database_url: str, device_id: str, kind: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE device_id = %s AND type = %s",
                           (device_id, kind)).fetchone()
    return int(row[0]) if row else 0


async def test_device_registered_as_the_platform_account_is_refused(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    _, eid = await _community_with_elder(admin_http)
    for taken in (provisioning.SERVICE_USER, "ELDERCARE-platform", "eldercare-ingest"):
        r = await admin_http.post("/api/v1/devices", json={"id": taken, "kind": "sos_button",
                                                           "elder_id": eid})
        assert r.status_code == 422, r.text
        assert "reserved" in r.text

    # Even a row written behind the API's back never becomes a broker login: the device
    # listener's files know devices only, each in its own `device.` namespace.
    device_password, hashed = provisioning.new_credentials()
    with psycopg.connect(platform.database_url) as conn:
        conn.execute("INSERT INTO devices (id, kind, elder_id) VALUES (%s, 'sos_button', %s)",
                     (provisioning.SERVICE_USER, eid))
        conn.execute(provisioning.ISSUE_SQL, (provisioning.SERVICE_USER, hashed))
    try:
        provisioning.publish(platform.database_url, platform.mqtt_auth_dir)
        auth = Path(platform.mqtt_auth_dir)
        assert provisioning.SERVICE_USER not in (auth / provisioning.PASSWORD_FILE).read_text()
        for url in (platform.mqtt_url, platform.device_broker_url):
            for user in (provisioning.SERVICE_USER,
                         provisioning.device_username(provisioning.SERVICE_USER)):
                assert not await _logs_in(url, user, device_password), (url, user)
        # The platform's own account still works, and only on the service listener.
        service = MqttTarget.parse(platform.mqtt_url)
        assert service.username and service.password
        assert await _logs_in(platform.mqtt_url, service.username, service.password)
        assert not await _logs_in(platform.device_broker_url, service.username,
                                  service.password)
    finally:
        with psycopg.connect(platform.database_url) as conn:
            conn.execute("DELETE FROM device_credentials WHERE device_id = %s",
                         (provisioning.SERVICE_USER,))
            conn.execute("DELETE FROM devices WHERE id = %s", (provisioning.SERVICE_USER,))
        provisioning.publish(platform.database_url, platform.mqtt_auth_dir)


async def _hold_client_id(url: str, user: str, password: str, identifier: str,
                          stop: asyncio.Event) -> int:
    """Connect again and again with `identifier` (as the attacker did); returns the count."""
    target = MqttTarget.parse(url)
    attempts = 0
    while not stop.is_set():
        attempts += 1
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client(target.host, target.port, username=user, password=password,
                                      identifier=identifier, timeout=5):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
    return attempts


async def test_device_cannot_take_over_ingests_mqtt_session(
    platform: Settings, admin_http: httpx.AsyncClient,
) -> None:
    cid, eid = await _community_with_elder(admin_http)
    logins = {}
    for device_id, kind in ((f"{eid}-sos", "sos_button"), (f"{eid}-watch", "smart_watch")):
        r = await admin_http.post("/api/v1/devices", json={"id": device_id, "kind": kind,
                                                           "elder_id": eid})
        assert r.status_code == 201, r.text
        logins[kind] = r.json()["mqtt"]
        await eventually(lambda login=logins[kind]: _logs_in(
            platform.device_broker_url, login["username"], login["password"]), 10, "a login")
    login, presser = logins["smart_watch"], logins["sos_button"]
    # A device login is refused on the service listener, where client ids are free.
    assert not await _logs_in(platform.mqtt_url, login["username"], login["password"])

    stop = asyncio.Event()
    attacker = asyncio.create_task(_hold_client_id(
        platform.device_broker_url, login["username"], login["password"], client_id(platform),
        stop))
    device_id = f"{eid}-sos"
    target = MqttTarget.parse(platform.device_broker_url)
    try:
        async with aiomqtt.Client(target.host, target.port, username=presser["username"],
                                  password=presser["password"],
                                  identifier=f"press-{uuid.uuid4().hex}") as button:
            for n in range(20):
                await button.publish(event_topic(cid, device_id), _sos(f"press-{n}"), qos=1)
                await asyncio.sleep(0.2)  # the presses spread over the attack, as in the report
    finally:
        stop.set()
        attempts = await attacker
    assert attempts >= 1
    await eventually(lambda: _stored(platform.database_url, device_id, "sos") == 20 or None, 30,
                     "all 20 SOS presses stored")


async def test_gateway_key_cannot_post_for_another_community(
    infra: Settings, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ours, theirs = make_community(), make_community()
    save(infra.database_url, [ours, theirs])
    run = start_run(infra, tmp_path_factory.mktemp("scoped"),
                    ingest_gateway_keys="vendor-a=key-a,vendor-b=key-b,vendor-w=key-w",
                    ingest_gateway_scopes=f"vendor-a={ours.id},vendor-b={theirs.id},"
                                          f"vendor-w={ours.id}/{ours.elders[0].id}-smart")
    button = next(d.id for d in theirs.elders[0].devices if d.kind == "sos_button")
    sos = {"msg_id": f"sos-{uuid.uuid4().hex[:6]}", "ts": time.time(), "type": "sos"}
    url = f"{run.http}/ingest/v1/batch"

    async def post(gateway: str, key: str, community_id: str, device_id: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.post(url, json={"items": [
                {"community_id": community_id, "device_id": device_id, "payload": sos}]},
                headers={"X-Eldercare-Gateway": gateway, "Authorization": f"Bearer {key}"})

    try:
        await run.ready()
        forged = await post("vendor-a", "key-a", theirs.id, button)
        assert forged.status_code == 403, forged.text
        assert forged.json()["results"][0]["reason"] == "out_of_scope"
        # Claiming its own community for the other community's device does not help either.
        assert (await post("vendor-a", "key-a", ours.id, button)).json()["results"][0][
            "reason"] == "topic_mismatch"
        ours_button = next(d.id for d in ours.elders[0].devices if d.kind == "sos_button")
        assert (await post("vendor-w", "key-w", ours.id, ours_button)).status_code == 403
        # The forged press claimed nothing: the real one, with the same msg_id, is accepted.
        real = await post("vendor-b", "key-b", theirs.id, button)
        assert real.status_code == 200 and real.json()["accepted"] == 1, real.text
        letters = await read_topic(infra.kafka_bootstrap, kafka.DEADLETTER, lambda rs: any(
            r["reason"] == "out_of_scope" and button in r["detail"] for r in rs))
        letter = next(r for r in letters if r["reason"] == "out_of_scope" and button in r["detail"])
        assert letter["source"] == "http" and letter["topic"] == "http/vendor-a"
        assert theirs.id in letter["detail"]
    finally:
        run.stop()


async def _signed_post(settings: Settings, path: str, params: dict[str, str]) -> httpx.Response:
    url = settings.public_base_url + path
    signature = RequestValidator(settings.twilio_auth_token).compute_signature(url, params)
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url, data=params, headers={"X-Twilio-Signature": signature})


def _open_incident(settings: Settings, elder_id: str) -> dict[str, Any] | None:
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT id, status FROM incidents WHERE elder_id = %s AND kind = 'sos'"
            " AND status <> 'resolved'", (elder_id,)).fetchone()


def _acknowledged(settings: Settings, elder_id: str) -> int:
    """How many of the elder's incidents are acknowledged (and not yet resolved)."""
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM incidents WHERE elder_id = %s"
                           " AND status = 'acknowledged'", (elder_id,)).fetchone()
    return int(row[0]) if row else 0


_AGE = ("UPDATE notifications SET created_at = created_at {} interval '3 hours' WHERE incident_id"
        " IN (SELECT id FROM incidents WHERE elder_id = %s)")


def _texted(settings: Settings, incident_id: object, phone: str) -> bool:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute("SELECT 1 FROM notifications WHERE incident_id = %s AND"
                            " to_number = %s AND channel = 'sms'",
                            (incident_id, phone)).fetchone() is not None


def _steps(settings: Settings, incident_id: object, status: str) -> int:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM escalation_steps WHERE incident_id = %s"
                           " AND status = %s", (incident_id, status)).fetchone()
    return int(row[0]) if row else 0


async def _press_sos(settings: Settings, community: Community, ago_s: float = 0) -> None:
    button = next(d for d in community.elders[0].devices if d.kind == "sos_button")
    async with MqttTarget.parse(settings.mqtt_url).client() as client:
        await client.publish(event_topic(community.id, button.id),
                             _sos(f"press-{uuid.uuid4().hex[:8]}", time.time() - ago_s), qos=1)


async def test_replayed_sms_reply_does_not_acknowledge_a_new_incident(
    platform: Settings, community: Community, twilio: TwilioMock, admin_http: httpx.AsyncClient,
) -> None:
    elder = community.elders[0]
    daughter = elder.contacts[1].phone
    # Pressed 20 minutes ago (buffered by the device): the press now is a new episode.
    await _press_sos(platform, community, ago_s=1200)
    first = await eventually(lambda: _open_incident(platform, elder.id), 30, "incident 1")
    await eventually(lambda: twilio.messages(daughter), 30, "the SMS of incident 1")
    captured = {"From": daughter, "To": platform.twilio_from_number, "Body": "1",
                "MessageSid": "SM" + uuid.uuid4().hex}
    answer = await _signed_post(platform, "/twilio/sms/inbound", captured)
    assert answer.status_code == 200 and elder.name in answer.text
    assert (await admin_http.post(f"/api/v1/incidents/{first['id']}/resolve",
                                  json={"outcome": "elder_fine"})).status_code == 200

    await _press_sos(platform, community)
    second = await eventually(lambda: _open_incident(platform, elder.id), 30, "incident 2")
    # Incident 1's outcome SMS also goes to her: wait for incident 2's own alert SMS.
    await eventually(lambda: _texted(platform, second["id"], daughter), 30,
                     "the SMS of incident 2")
    assert _steps(platform, second["id"], "pending") > 0

    replayed = await _signed_post(platform, "/twilio/sms/inbound", captured)
    assert replayed.status_code == 200 and "<Message>" not in replayed.text
    assert _acknowledged(platform, elder.id) == 0
    assert _steps(platform, second["id"], "cancelled") == 0

    # A fresh reply after the window (the message went out three hours ago) is not enough…
    with psycopg.connect(platform.database_url) as conn:
        conn.execute(_AGE.format("-"), (elder.id,))
    late = {**captured, "MessageSid": "SM" + uuid.uuid4().hex}
    assert elder.name not in (await _signed_post(platform, "/twilio/sms/inbound", late)).text
    assert _acknowledged(platform, elder.id) == 0
    # …while one in time acknowledges the incident that texted this number.
    with psycopg.connect(platform.database_url) as conn:
        conn.execute(_AGE.format("+"), (elder.id,))
    fresh = {**captured, "MessageSid": "SM" + uuid.uuid4().hex}
    assert elder.name in (await _signed_post(platform, "/twilio/sms/inbound", fresh)).text
    assert _acknowledged(platform, elder.id) == 1


async def test_banner_and_webhook_logs_show_no_password_or_phone_number(
    platform: Settings, workdir: Path,
) -> None:
    stranger = f"+86139{uuid.uuid4().int % 10**8:08d}"
    reply = {"From": stranger, "To": platform.twilio_from_number, "Body": "1",
             "MessageSid": "SM" + uuid.uuid4().hex}
    for _ in range(2):  # the reply, then its replay: both are logged
        assert (await _signed_post(platform, "/twilio/sms/inbound", reply)).status_code == 200
    masked = mask_phone(stranger)

    def logged() -> bool | None:
        return masked in (workdir / "console.log").read_text() or None

    await eventually(logged, 10, "the reply in the console's log")
    service_password = MqttTarget.parse(platform.mqtt_url).password
    assert service_password
    logs = await asyncio.to_thread(lambda: {
        log.name: log.read_text(errors="replace") for log in workdir.glob("*.log")})
    for name, text in logs.items():
        assert stranger not in text, name
        assert service_password not in text, name
    banner = logs["up.log"]
    assert "eldercare is up" in banner and "eldercare-platform:***@" in banner


def test_masking_keeps_only_what_identifies_nothing() -> None:
    assert mask_phone("+8613912340001") == "+*********0001"
    assert mask_url("mqtt://eldercare-platform:s3cret@127.0.0.1:1883") == \
        "mqtt://eldercare-platform:***@127.0.0.1:1883"
    assert mask_url("postgresql://127.0.0.1/db") == "postgresql://127.0.0.1/db"
    text = mask_text("Twilio: 'To' +8613912340001 invalid; called 13912340002 at 1796021300123;"
                     " postgresql://u:pw@db:5432/x")
    assert "13912340001" not in text and "13912340002" not in text
    assert "1796021300123" in text and "u:***@db" in text
    event = mask_log_event(None, "info",
                           {"msg": "x", "auth_token": "abc", "phone": "+8613912340001"})
    assert event == {"msg": "x", "auth_token": "***", "phone": "+*********0001"}


async def test_mqtt_over_tls_refuses_plain_text_and_unknown_certificates(tmp_path: Path) -> None:
    certs, other = tmp_path / "certs", tmp_path / "other-ca"
    for out in (certs, other):
        await asyncio.to_thread(make_certs, out)
    auth = tmp_path / "auth"
    service_password = provisioning.new_password()
    provisioning.init_auth_dir(auth, service_password)
    service_port, device_port = procs.free_port(), procs.free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(provisioning.mosquitto_auth_config(
        auth, f"{service_port} 127.0.0.1", f"{device_port} 127.0.0.1", tls_dir=certs)
        + "persistence false\n")
    broker = procs.spawn(["/usr/sbin/mosquitto", "-c", str(conf)], tmp_path / "mosquitto.log")
    try:
        procs.wait_for_port(device_port, broker)
        login = f"{provisioning.SERVICE_USER}:{service_password}@localhost:{service_port}"
        assert await _logs_in(f"mqtts://{login}?ca={certs / 'ca.crt'}", "", "")
        assert not await _logs_in(f"mqtt://{login}", "", "")  # plain text: no answer
        assert not await _logs_in(f"mqtts://{login}?ca={other / 'ca.crt'}", "", "")
    finally:
        procs.stop(broker)


async def test_webhooks_serve_https_only_when_given_a_certificate(
    infra: Settings, tmp_path: Path,
) -> None:
    certs = tmp_path / "certs"
    await asyncio.to_thread(make_certs, certs)
    port = procs.free_port()
    env = {**child_env(infra), "ELDERCARE_WEBHOOKS_BIND": f"127.0.0.1:{port}",
           "ELDERCARE_TLS_CERT_FILE": str(certs / "server.crt"),
           "ELDERCARE_TLS_KEY_FILE": str(certs / "server.key")}
    service = procs.spawn([sys.executable, "-m", "eldercare.cli", "service", "webhooks"],
                          tmp_path / "webhooks.log", env)
    try:
        await asyncio.to_thread(procs.wait_for_port, port, service)
        trust = ssl.create_default_context(cafile=certs / "ca.crt")
        async with httpx.AsyncClient(verify=trust, timeout=10) as https:
            assert (await https.get(f"https://localhost:{port}/healthz")).status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP gets no answer
            async with httpx.AsyncClient(timeout=5) as plain:
                await plain.get(f"http://localhost:{port}/healthz")
    finally:
        procs.stop(service)


def test_kafka_clients_use_sasl_over_tls_when_configured(tmp_path: Path) -> None:
    make_certs(tmp_path)
    settings = Settings(kafka_bootstrap="kafka-1:9092", kafka_security_protocol="SASL_SSL",
                        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="eldercare",
                        kafka_sasl_password="pw", kafka_ca_file=str(tmp_path / "ca.crt"))
    options = kafka.security(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "eldercare" and options["ssl_context"] is not None
    assert kafka.security(Settings()) == {"security_protocol": "PLAINTEXT"}


def _two_free_ports() -> int:
    """A port whose successor is free too (`ingest --workers 2` binds base and base + 1)."""
    while True:
        base = procs.free_port()
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", base + 1))
            return base


async def test_several_ingest_workers_keep_their_own_sessions(
    infra: Settings, community: Community, tmp_path: Path,
) -> None:
    """Client ids are bound to logins only on the device listener: the service account's
    ingest workers keep one persistent session each on the service listener."""
    broker = embedded.start_kafka(tmp_path)  # their own Kafka: the session's platform unaffected
    settings = infra.model_copy(update={
        "kafka_bootstrap": broker.url, "mqtt_shared_group": f"w{uuid.uuid4().hex[:6]}",
        "ingest_http_bind": f"127.0.0.1:{_two_free_ports()}", "metrics_binds": ""})
    await kafka.ensure_topics(settings)
    log = tmp_path / "ingest.log"
    workers = procs.spawn([sys.executable, "-m", "eldercare.cli", "ingest", "--workers", "2"],
                          log, child_env(settings))
    button = next(d for d in community.elders[0].devices if d.kind == "sos_button")
    try:
        await eventually(lambda: log.read_text().count("ingest subscribed") == 2 or None, 60,
                         "both workers subscribed")
        async with MqttTarget.parse(settings.mqtt_url).client() as client:
            for n in range(20):
                await client.publish(event_topic(community.id, button.id), _sos(f"w-{n}"), qos=1)
        events = await read_topic(broker.url, kafka.EVENTS, lambda rs: sum(
            r.get("device_id") == button.id for r in rs) >= 20)
        assert sorted(r["event_id"] for r in events if r.get("device_id") == button.id) == \
            sorted(f"{button.id}/w-{n}" for n in range(20))
        assert "connection lost" not in log.read_text()  # no worker took another's session
    finally:
        procs.stop(workers)
        broker.stop()
