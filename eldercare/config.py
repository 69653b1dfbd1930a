"""The one settings object. Every setting is an environment variable with the prefix ELDERCARE_."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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

    data_dir: Path = Field(Path(".eldercare"), description="State of the embedded services")
    kafka_partitions: int = Field(6, description="Partitions of the events topic")
    alert_partitions: int = Field(3, description="Partitions of the alerts topic")
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
    demo_sos_after_s: float = Field(30.0, description="Seconds after demo start an SOS is pressed")
    log_level: str = Field("INFO", description="Log level")
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process from the environment."""
    return Settings()
