"""The one settings object. Every setting is an environment variable with the prefix ELDERCARE_."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Typed configuration; an empty service URL means "start the embedded one"."""

    model_config = SettingsConfigDict(env_prefix="ELDERCARE_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("", description="Kafka bootstrap servers, host:port[,host:port]")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How the Kafka clients talk to the brokers (SASL_SSL in"
        " production)")
    kafka_sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "", description="SASL mechanism with SASL_PLAINTEXT / SASL_SSL")
    kafka_sasl_username: str = Field("", description="SASL user of the platform's Kafka clients")
    kafka_sasl_password: str = Field("", description="SASL password of that user")
    kafka_ca_file: str = Field(
        "", description="CA certificate(s) the Kafka brokers' certificates are checked against"
        " (SSL / SASL_SSL); empty: the system's CAs")
    mqtt_url: str = Field("", description="MQTT broker URL, mqtt://user:pass@host:port, or"
                          " mqtts://user:pass@host:port?ca=/path/ca.crt for TLS")
    mqtt_device_url: str = Field(
        "", description="Where devices connect (the broker's device listener, mqtt://host:port);"
        " empty: the host and port of mqtt_url")
    database_url: str = Field("", description="PostgreSQL URL (postgresql://...)")

    notify: Literal["twilio", "dry-run"] = Field(
        "dry-run", description="How calls and SMS go out: twilio (refuses to start without the"
        " Twilio credentials) or dry-run (recorded, nothing sent)")
    twilio_account_sid: str = Field("", description="Twilio account SID (AC...)")
    twilio_auth_token: str = Field("", description="Twilio auth token; also verifies webhooks")
    twilio_from_number: str = Field("", description="E.164 caller id / SMS sender")
    twilio_api_base_url: str = Field(
        "https://api.twilio.com", description="Twilio REST base URL (a mock in tests)"
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8080", description="Public URL of the console, for Twilio webhooks"
    )
    family_base_url: str = Field(
        "", description="Public URL the family page's links in SMS start with (the webhooks "
        "app serves the page too, so it can face the internet while the console stays "
        "internal); empty: ELDERCARE_PUBLIC_BASE_URL")
    link_secret: str = Field(
        "", description="Key the family links are signed with; empty: one made on first use "
        "and kept in the database")
    console_bind: str = Field("127.0.0.1:8080", description="host:port the console listens on")
    tls_cert_file: str = Field(
        "", description="Certificate (PEM, chain first) the console and the webhooks serve"
        " HTTPS with; empty: plain HTTP (local runs, or TLS ended by a proxy)")
    tls_key_file: str = Field("", description="Private key of tls_cert_file (PEM)")
    webhooks_bind: str = Field(
        "127.0.0.1:8082", description="host:port of `eldercare service webhooks`: Twilio's "
        "webhooks alone, to face the internet while the console stays internal")

    data_dir: Path = Field(Path(".eldercare"), description="State of the embedded services")
    kafka_partitions: int = Field(6, description="Partitions of the events topic")
    alert_partitions: int = Field(3, description="Partitions of the alerts topic")
    kafka_session_timeout_ms: int = Field(
        2000, description="Consumer group session timeout: how long a hung detectors, "
        "dispatcher or store process holds its partitions (a dead one is removed from its "
        "group by the supervisor at once); tansu also holds every group join for about half "
        "of it (rounded up to whole seconds)")
    kafka_heartbeat_interval_ms: int = Field(
        400, description="Consumer heartbeat interval (well below the session timeout)")
    kafka_roll_records: int = Field(
        8000, description="Embedded Kafka only: once a partition of the events, alerts or "
        "dead-letter topic holds this many records, the supervisor replaces the broker by a "
        "fresh one as soon as every consumer has caught up (tansu 0.6 slows down past ~10,000 "
        "stored batches per partition and keeps no retention); 0: never")
    kafka_roll_check_s: float = Field(
        1.0, description="Seconds between the supervisor's looks at the embedded Kafka's size "
        "while the platform's producers announce records (every 30 s when none are)")
    operator_phone: str = Field(
        "", description="E.164 number told by SMS when the platform's database is unreachable"
        " (sent through the notification channel, so it needs no database)")
    mqtt_shared_group: str = Field(
        "eldercare-ingest", description="MQTT 5 shared-subscription group; empty for a plain one"
    )
    mqtt_protocol: str = Field(
        "5", description="MQTT version the platform's services speak: 5, or 3.1.1 for a broker "
        "without MQTT 5 (one ingest worker then: no shared subscriptions)")
    ingest_mqtt_session: str = Field(
        "3.1.1", description="MQTT version of ingest's own subscribing session when the broker "
        "speaks 5: 3.1.1 (paho reads its messages in half the time of MQTT 5 ones; shared "
        "subscriptions still work on mosquitto, whose max_inflight_messages bounds the messages "
        "in flight) or 5 (Receive Maximum and a session expiry of 7 days)")
    embedded_mqtt: str = Field(
        "auto", description="Broker `up` starts when ELDERCARE_MQTT_URL is empty: auto (mosquitto"
        " when installed, else amqtt), mosquitto or amqtt")
    mqtt_max_payload: int = Field(64 * 1024, description="Largest accepted MQTT payload, bytes")
    ingest_max_future_s: float = Field(
        300.0, description="Device timestamps further ahead are replaced by the receive time"
    )
    ingest_max_past_s: float = Field(
        7 * 86400.0, description="Device timestamps older than this are replaced likewise"
    )
    ingest_device_timezone: str = Field(
        "Asia/Shanghai", description="Zone of device times sent as ISO 8601 without an offset"
    )
    ingest_http_bind: str = Field(
        "127.0.0.1:8081",
        description="host:port of the ingest HTTP gateway and /metrics; worker N adds N to port",
    )
    ingest_gateway_keys: str = Field(
        "", description="Vendor gateways allowed to POST batches: gateway_id=secret[,...]"
    )
    ingest_gateway_scopes: str = Field(
        "", description="What each gateway may post for: gateway_id=community[|community...]"
        "[/device_prefix[|prefix...]][,...]; `*` for every community. A gateway left out may"
        " post nothing")
    ingest_http_max_body: int = Field(1024 * 1024, description="Largest HTTP batch body, bytes")
    ingest_http_max_items: int = Field(500, description="Most items in one HTTP batch")
    ingest_zigbee_devices: str = Field(
        "", description="Zigbee2MQTT friendly_name=device_id[,...]; unmapped names are device ids"
    )
    ingest_dedup_window_s: float = Field(
        3600.0, description="A message with the device, msg_id and event time of one accepted"
        " this long ago is a duplicate; read back from the events topic at start")
    ingest_dedup_capacity: int = Field(
        200_000, description="Most message identities kept in the duplicate window")
    ingest_worker: int = Field(0, description="Number of this ingest process (`ingest --workers`)")
    mqtt_auth_dir: str = Field(
        "", description="Directory of the broker's password file, ACL and pid file, re-rendered"
        " on provisioning; empty when the platform does not manage the broker")
    readings_retention_days: int = Field(
        400, description="Days of readings (and their hourly rollups) kept: a year of trends "
        "for the yearly health check, plus a month's margin")
    location_retention_days: int = Field(
        30, description="Days of readings of type `location` kept: where someone is, is the "
        "most sensitive reading and only the recent past helps a search")
    incidents_retention_days: int = Field(
        1825, description="Days after which a resolved incident is anonymised (notes, names, "
        "numbers, alert payloads go; kind, times and outcome stay for statistics): five years "
        "covers complaints and care-quality reviews")
    notifications_retention_days: int = Field(
        180, description="Days of sent calls/SMS (numbers and message bodies) kept: long enough "
        "to answer a family's question about a night, short enough to hold few numbers")
    audit_retention_days: int = Field(
        1095, description="Days of audit log kept: PIPL asks for processing records of three "
        "years; the Cybersecurity Law at least six months of access logs")
    console_trusted_proxies: str = Field(
        "", description="Comma-separated addresses of reverse proxies whose X-Forwarded-For/"
        "-Proto the console and webhooks believe (`*` any); empty: none, the peer address counts")
    console_streams_per_user: int = Field(
        10, description="Live streams (console tabs) one staff login may hold open at once")
    console_max_body: int = Field(
        256 * 1024, description="Largest request body of the console and webhooks, bytes (413)")
    console_max_import_body: int = Field(
        10 * 1024 * 1024, description="Largest ledger import body (CSV/XLSX), bytes (413)")
    readings_days_ahead: int = Field(3, description="Daily readings partitions made ahead")
    readings_store_heartbeats: bool = Field(
        True, description="Store heartbeats as readings rows. false: a heartbeat only updates "
        "its device's last seen, status and battery (about 4/5 fewer rows)")
    dispatcher_retry_attempts: int = Field(
        4, description="Twilio requests per step before the ladder moves on (429/5xx/no connect)"
    )
    dispatcher_retry_backoff_s: float = Field(
        1.0, description="First retry delay; doubles per attempt (with jitter)"
    )
    dispatcher_twilio_timeout_s: float = Field(10.0, description="Timeout of one Twilio request")
    dispatcher_reconcile_settle_s: float = Field(
        1.0, ge=0, description="After a dispatcher died during a Twilio request, Twilio is asked"
        " whether it has the call/SMS once the request is this old (a request it received but had"
        " not created yet would otherwise be sent twice)")
    dispatcher_reconcile_retry_s: float = Field(
        15.0, gt=0, description="An outcome Twilio could not be asked about (outage, timeout) is"
        " asked about again this often, for an hour")
    dispatcher_workers: int = Field(
        8, description="Step claimers of one dispatcher process (each uses a database connection"
        " for moments; none waits for Twilio)")
    dispatcher_requests: int = Field(
        64, ge=1, description="Twilio requests one dispatcher process has in flight at once: a"
        " slow answer holds one of these, never a claimer or a database connection")
    dispatcher_sms_reply_window_s: float = Field(
        7200.0, description="An SMS reply acknowledges only an incident that notified its number"
        " within this many seconds")
    demo_sos_after_s: float = Field(30.0, description="Seconds after demo start an SOS is pressed")
    bench_history: Path = Field(
        Path("bench-results/history.jsonl"),
        description="JSON lines file every `eldercare bench` run appends its figures to"
        " (`eldercare bench report` plots it)")
    log_level: str = Field("INFO", description="Log level")
    metrics_binds: str = Field(
        "detectors=127.0.0.1:9101,dispatcher=127.0.0.1:9102,store=127.0.0.1:9103",
        description="service=host:port[,...]: where each service process serves /metrics,"
        " /healthz and /readyz (the console and ingest's HTTP gateway serve their own)")
    language: str = Field("zh-Hans", description="Default language of messages (zh-Hans or en)")

    @property
    def device_broker_url(self) -> str:
        """Where devices log in: the device listener, else the one broker address."""
        return self.mqtt_device_url or self.mqtt_url

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number)

    @property
    def dry_run(self) -> bool:
        """Nothing is really sent (ELDERCARE_NOTIFY=dry-run)."""
        return self.notify != "twilio"

    @model_validator(mode="after")
    def _notify_channel(self) -> Self:
        if self.notify == "twilio" and not self.twilio_configured:
            missing = [f"ELDERCARE_{name.upper()}" for name in (
                "twilio_account_sid", "twilio_auth_token", "twilio_from_number")
                if not getattr(self, name)]
            raise ValueError(
                f"ELDERCARE_NOTIFY=twilio but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} empty: set the Twilio credentials, or"
                " ELDERCARE_NOTIFY=dry-run to record calls and SMS without sending them")
        return self

    @property
    def console_host(self) -> str:
        return self.console_bind.rsplit(":", 1)[0]

    @property
    def console_port(self) -> int:
        return int(self.console_bind.rsplit(":", 1)[1])

    @field_validator("mqtt_protocol", "ingest_mqtt_session")
    @classmethod
    def _mqtt_protocol(cls, value: str) -> str:
        if value not in {"5", "3.1.1"}:
            raise ValueError(f"unknown MQTT version {value!r} (5 or 3.1.1)")
        return value

    @field_validator("embedded_mqtt")
    @classmethod
    def _embedded_mqtt(cls, value: str) -> str:
        if value not in {"auto", "mosquitto", "amqtt"}:
            raise ValueError(f"unknown embedded broker {value!r} (auto, mosquitto or amqtt)")
        return value

    @field_validator("ingest_device_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai, UTC)") from None
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process from the environment."""
    return Settings()


def child_env(settings: Settings, clean: bool = False) -> dict[str, str]:
    """The environment of a child process that must see `settings`: this process's environment
    (without its own ELDERCARE_ variables when `clean`) plus every setting."""
    env = {k: v for k, v in os.environ.items() if not (clean and k.startswith("ELDERCARE_"))}
    env.update({f"ELDERCARE_{k.upper()}": str(v) for k, v in settings.model_dump().items()})
    return env
