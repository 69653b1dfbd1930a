"""The one settings object. Every setting is an environment variable with the prefix ELDERCARE_."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Typed configuration; an empty service URL means "start the embedded one"."""

    model_config = SettingsConfigDict(env_prefix="ELDERCARE_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("", description="Kafka bootstrap servers, host:port[,host:port]")
    mqtt_url: str = Field("", description="MQTT broker URL, mqtt://user:pass@host:port")
    database_url: str = Field("", description="PostgreSQL URL (postgresql://...)")

    twilio_account_sid: str = Field("", description="Twilio account SID (AC...)")
    twilio_auth_token: str = Field("", description="Twilio auth token; also verifies webhooks")
    twilio_from_number: str = Field("", description="E.164 caller id / SMS sender")
    twilio_api_base_url: str = Field(
        "https://api.twilio.com", description="Twilio REST base URL (a mock in tests)"
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8080", description="Public URL of the console, for Twilio webhooks"
    )
    console_bind: str = Field("127.0.0.1:8080", description="host:port the console listens on")
    webhooks_bind: str = Field(
        "127.0.0.1:8082", description="host:port of `eldercare service webhooks`: Twilio's "
        "webhooks alone, to face the internet while the console stays internal")

    data_dir: Path = Field(Path(".eldercare"), description="State of the embedded services")
    kafka_partitions: int = Field(6, description="Partitions of the events topic")
    alert_partitions: int = Field(3, description="Partitions of the alerts topic")
    kafka_session_timeout_ms: int = Field(
        3000, description="Consumer group session timeout: how long a killed detectors, "
        "dispatcher or store process holds its partitions before its replacement gets them")
    kafka_heartbeat_interval_ms: int = Field(
        500, description="Consumer heartbeat interval (well below the session timeout)")
    operator_phone: str = Field(
        "", description="E.164 number told by SMS when the platform's database is unreachable"
        " (sent through the notification channel, so it needs no database)")
    mqtt_shared_group: str = Field(
        "eldercare-ingest", description="MQTT 5 shared-subscription group; empty for a plain one"
    )
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
    ingest_http_max_body: int = Field(1024 * 1024, description="Largest HTTP batch body, bytes")
    ingest_http_max_items: int = Field(500, description="Most items in one HTTP batch")
    ingest_zigbee_devices: str = Field(
        "", description="Zigbee2MQTT friendly_name=device_id[,...]; unmapped names are device ids"
    )
    ingest_worker: int = Field(0, description="Number of this ingest process (`ingest --workers`)")
    mqtt_auth_dir: str = Field(
        "", description="Directory of the broker's password file, ACL and pid file, re-rendered"
        " on provisioning; empty when the platform does not manage the broker")
    readings_retention_days: int = Field(400, description="Days of readings kept")
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
    dispatcher_workers: int = Field(8, description="Steps one dispatcher process runs at once")
    demo_sos_after_s: float = Field(30.0, description="Seconds after demo start an SOS is pressed")
    log_level: str = Field("INFO", description="Log level")
    metrics_binds: str = Field(
        "detectors=127.0.0.1:9101,dispatcher=127.0.0.1:9102,store=127.0.0.1:9103",
        description="service=host:port[,...]: where each service process serves /metrics,"
        " /healthz and /readyz (the console and ingest's HTTP gateway serve their own)")
    language: str = Field("zh-Hans", description="Default language of messages (zh-Hans or en)")

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number)

    @property
    def console_host(self) -> str:
        return self.console_bind.rsplit(":", 1)[0]

    @property
    def console_port(self) -> int:
        return int(self.console_bind.rsplit(":", 1)[1])

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
