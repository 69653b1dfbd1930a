"""Device MQTT credentials, and the Mosquitto password file and ACL rendered from them.

A device logs in as `device.<its id>` (its own namespace: no device login can ever equal a
service account) and may only write under `eldercare/v1/<its community>/<its id>/#`. The
platform's own services use one service account that may read and write `eldercare/v1/#` (shared
subscriptions included).

The broker has two listeners with separate logins (`per_listener_settings true`): the device
listener knows only device logins and replaces every client id by the login
(`use_username_as_clientid`), so a device can never take over another client's session; the
service listener (internal) knows only the service account, whose processes choose their own
client ids (each ingest worker keeps its persistent session). The broker is told to re-read the
files with SIGHUP; its pid is kept in the auth directory."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from foundation import logs
from foundation.mqtt import TOPIC_ROOT

log = logs.get(__name__)

SERVICE_USER = "eldercare-platform"
# Names a device id may never take: the service accounts, and the prefix kept for future ones.
RESERVED_PREFIX = "eldercare"
DEVICE_USER_PREFIX = "device."
PASSWORD_FILE = "mosquitto.passwd"  # device logins (device listener)
ACL_FILE = "mosquitto.acl"
SERVICE_PASSWORD_FILE = "service.passwd"  # the service account (service listener)
SERVICE_ACL_FILE = "service.acl"
PID_FILE = "mosquitto.pid"
_ITERATIONS = 101  # what mosquitto_passwd uses for $7$


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str, iterations: int = _ITERATIONS) -> str:
    """Mosquitto's `$7$` format: PBKDF2-SHA512 with a 12-byte salt, base64 fields."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """True when `password` matches a `$7$` hash."""
    try:
        _, seven, iterations, salt, digest = hashed.split("$")
        computed = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return seven == "7" and hmac.compare_digest(computed, base64.b64decode(digest))


def new_password() -> str:
    """A random password (shown to the installer once)."""
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class DeviceLogin:
    """What the broker needs to know about one device."""

    device_id: str
    community_id: str
    password_hash: str


def device_topic_prefix(community_id: str, device_id: str) -> str:
    return f"{TOPIC_ROOT}/{community_id}/{device_id}"


def device_username(device_id: str) -> str:
    """The broker login of a device: its id in the devices' own namespace."""
    return f"{DEVICE_USER_PREFIX}{device_id}"


def is_reserved_device_id(device_id: str) -> bool:
    """True for ids a device may not have: a service account's name or its reserved prefix
    (refused by the registry, and left out of the broker's files whatever the database holds)."""
    return device_id.lower().startswith(RESERVED_PREFIX)


def init_auth_dir(auth_dir: Path, service_password: str) -> None:
    """Set up an auth directory holding only the service account (the broker's first start)."""
    auth_dir.mkdir(parents=True, exist_ok=True)
    _write(auth_dir / SERVICE_PASSWORD_FILE,
           f"{SERVICE_USER}:{hash_password(service_password)}\n")
    render(auth_dir, [])


def render(auth_dir: Path, devices: list[DeviceLogin]) -> None:
    """Write the device listener's password file and ACL for `devices`, and the service
    listener's ACL (atomically). Reserved ids are left out, whatever the database holds."""
    devices = [d for d in devices if not is_reserved_device_id(d.device_id)]
    _write(auth_dir / PASSWORD_FILE, "".join(
        f"{device_username(d.device_id)}:{d.password_hash}\n" for d in devices))
    acl: list[str] = []
    for d in devices:
        acl += [f"user {device_username(d.device_id)}",
                f"topic readwrite {device_topic_prefix(d.community_id, d.device_id)}/#", ""]
    _write(auth_dir / ACL_FILE, "\n".join(acl))
    _write(auth_dir / SERVICE_ACL_FILE,
           "\n".join([f"user {SERVICE_USER}", f"topic readwrite {TOPIC_ROOT}/#", ""]))


def _write(path: Path, text: str) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as tmp:  # mkstemp: mode 0600, a name of its own per writer
        tmp.write(text)
    os.replace(name, path)  # the broker never reads a half-written file


def mosquitto_auth_config(auth_dir: Path, service_listener: str = "8884",
                          device_listener: str = "8883", tls_dir: Path | None = None) -> str:
    """The mosquitto.conf lines of the two listeners (`PORT [ADDRESS]` each) with their own
    logins; with `tls_dir` (from deploy/make-certs.sh) both speak TLS only."""
    # Started as root, mosquitto drops to user "mosquitto", which cannot read our 0600 files.
    user = "user root\n" if os.geteuid() == 0 else ""
    tls = "" if tls_dir is None else (
        f"certfile {tls_dir / 'server.crt'}\nkeyfile {tls_dir / 'server.key'}\n"
        "tls_version tlsv1.2\n")
    return (
        f"per_listener_settings true\n{user}"
        f"# platform services only (keep it internal)\nlistener {service_listener}\n{tls}"
        f"allow_anonymous false\npassword_file {auth_dir / SERVICE_PASSWORD_FILE}\n"
        f"acl_file {auth_dir / SERVICE_ACL_FILE}\n"
        f"# devices: the client id is always the login\nlistener {device_listener}\n{tls}"
        f"allow_anonymous false\npassword_file {auth_dir / PASSWORD_FILE}\n"
        f"acl_file {auth_dir / ACL_FILE}\nuse_username_as_clientid true\n")


def reload_broker(auth_dir: Path) -> bool:
    """SIGHUP the broker whose pid is in the auth directory; False when there is none."""
    try:
        pid = int((auth_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError:
        return False
    return True


_LOGINS = """
SELECT c.device_id, e.community_id, c.password_hash
FROM device_credentials c JOIN devices d ON d.id = c.device_id JOIN elders e ON e.id = d.elder_id
WHERE d.active AND e.active ORDER BY c.device_id
"""


def logins(database_url: str) -> list[DeviceLogin]:
    """Every active device's login, from the database."""
    with psycopg.connect(database_url) as conn:
        return [DeviceLogin(*r) for r in conn.execute(_LOGINS).fetchall()]


def publish(database_url: str, auth_dir: str) -> int:
    """Re-render the broker's files from the database and reload it; returns the device count.
    Does nothing when the platform does not manage the broker (`mqtt_auth_dir` unset)."""
    if not auth_dir:
        return 0
    # One writer at a time (threads and processes): read the database and render under the lock,
    # so a slower writer can never replace newer files with an older list.
    with open(Path(auth_dir) / ".render.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = logins(database_url)
        render(Path(auth_dir), found)
        reloaded = reload_broker(Path(auth_dir))
    log.info("mqtt auth rendered", devices=len(found), reloaded=reloaded)
    return len(found)


ISSUE_SQL = (
    "INSERT INTO device_credentials (device_id, password_hash) VALUES (%s, %s)"
    " ON CONFLICT (device_id) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
    " issued_at = now()"
)


def new_credentials() -> tuple[str, str]:
    """(password in clear, its $7$ hash): store the hash with ISSUE_SQL, show the password once."""
    password = new_password()
    return password, hash_password(password)


def write_pid(auth_dir: Path, pid: int) -> None:
    with contextlib.suppress(OSError):
        _write(auth_dir / PID_FILE, f"{pid}\n")
