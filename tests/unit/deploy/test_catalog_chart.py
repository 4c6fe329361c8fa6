"""The chart's catalog service (templates/catalog/): what runs, where its table lives, how
replicas find each other, which Secrets hold the key and its digests, who may call it and
how it is scraped. kubeconform checks these manifests in test_chart.py (ci/values-catalog.yaml
is one of its variants); this file checks what they mean."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.app.settings import Settings
from streams.config.settings import CatalogSettings, FleetSettings
from streams.config.topics import STAGES
from tests.unit.deploy.tools import (
    CHART,
    main_container,
    manifests,
    one,
    pod_labels,
    render,
    selects,
)

CI = CHART / "ci" / "values-catalog.yaml"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DEFAULT_CLIENTS = VALUES["catalog"]["clientStages"]


def _catalog(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "catalog"
    ]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    """name -> its literal value, or its valueFrom where it has one."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _secret(docs: list[dict[str, Any]], ref: dict[str, Any]) -> str:
    ref = ref["secretKeyRef"]
    return base64.b64decode(one(docs, "Secret", ref["name"])["data"][ref["key"]]).decode()


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return manifests(None)


def test_catalog_runs_as_a_statefulset_on_the_cpu_image(defaults: list[dict[str, Any]]) -> None:
    catalog = one(defaults, "StatefulSet", "t-pixelfleet-catalog")
    container = main_container(catalog)
    assert container["args"] == ["catalog"]
    assert container["image"] == "ghcr.io/pixelfleet/pixelfleet:0.1.0"
    assert catalog["spec"]["replicas"] == VALUES["catalog"]["replicas"]
    # The same hardening as the stages' pods.
    validate = next(
        d for d in defaults if d["kind"] == "Deployment" and "validate" in d["metadata"]["name"]
    )
    assert container["securityContext"] == main_container(validate)["securityContext"]
    pod = catalog["spec"]["template"]["spec"]
    assert (
        pod["securityContext"].items()
        >= validate["spec"]["template"]["spec"]["securityContext"].items()
    )
    assert container["resources"] == VALUES["catalog"]["resources"]
    assert selects(catalog["spec"]["selector"], pod_labels(catalog))


def test_its_probes_and_port_are_the_ones_it_serves(defaults: list[dict[str, Any]]) -> None:
    container = main_container(one(defaults, "StatefulSet", "t-pixelfleet-catalog"))
    (port,) = container["ports"]
    assert (
        port["containerPort"]
        == CatalogSettings().port
        == int(_env(container)["PIXELFLEET_CATALOG_PORT"])
    )
    for probe, path in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ]:
        assert container[probe]["httpGet"] == {"path": path, "port": port["name"]}, probe


def test_the_table_lives_on_a_volume_per_replica(defaults: list[dict[str, Any]]) -> None:
    catalog = one(defaults, "StatefulSet", "t-pixelfleet-catalog")
    container = main_container(catalog)
    data_dir = _env(container)["PIXELFLEET_CATALOG_DATA_DIR"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == data_dir)
    (claim,) = catalog["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == mount["name"] and not mount.get("readOnly")
    assert (
        claim["spec"]["resources"]["requests"]["storage"]
        == VALUES["catalog"]["persistence"]["size"]
    )
    assert mount["name"] not in {v["name"] for v in catalog["spec"]["template"]["spec"]["volumes"]}
    # Everything else stays read-only: the data directory is the one writable place beside /tmp.
    assert container["securityContext"]["readOnlyRootFilesystem"]
    ephemeral = one(
        manifests(None, "--set", "catalog.persistence.enabled=false"),
        "StatefulSet",
        "t-pixelfleet-catalog",
    )
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    volume = next(
        v for v in ephemeral["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    assert volume == {"name": mount["name"], "emptyDir": {}}


def test_each_replica_advertises_its_own_name_under_the_headless_service(
    defaults: list[dict[str, Any]],
) -> None:
    catalog = one(defaults, "StatefulSet", "t-pixelfleet-catalog")
    peers = one(defaults, "Service", catalog["spec"]["serviceName"])
    assert peers["spec"]["clusterIP"] == "None" and peers["spec"]["publishNotReadyAddresses"]
    assert peers["spec"]["selector"].items() <= pod_labels(catalog).items()
    env = main_container(catalog)["env"]
    names = [e["name"] for e in env]
    values = _env(main_container(catalog))
    assert values["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert values["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    url = values["PIXELFLEET_CATALOG_ADVERTISED_URL"]
    assert (
        url
        == f"http://$(POD_NAME).{peers['metadata']['name']}.$(POD_NAMESPACE).svc:{values['PIXELFLEET_CATALOG_PORT']}"
    )
    # $(VAR) expands only from variables defined earlier in the list.
    for used in re.findall(r"\$\((\w+)\)", url):
        assert names.index(used) < names.index("PIXELFLEET_CATALOG_ADVERTISED_URL")
    assert values["PIXELFLEET_CATALOG_HOST"] == "0.0.0.0"
    # The regular Service: a cluster address, ready replicas only, the same port.
    service = one(defaults, "Service", "t-pixelfleet-catalog")
    assert "clusterIP" not in service["spec"] and not service["spec"].get(
        "publishNotReadyAddresses"
    )
    assert service["spec"]["ports"] == peers["spec"]["ports"]
    # A client stays on one replica while it pages: another's list cursor is refused.
    assert service["spec"]["sessionAffinity"] == "ClientIP"


def test_every_catalog_variable_is_a_setting_the_service_reads(
    defaults: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered variables, Secret included, load into the settings model without error
    (a misspelt name is an error there, not a default) and mean what values say."""
    container = main_container(one(defaults, "StatefulSet", "t-pixelfleet-catalog"))
    wanted = {
        "HOST",
        "PORT",
        "ADVERTISED_URL",
        "DATA_DIR",
        "STORE",
        "API_KEY_HASHES",
        "MAX_BODY_BYTES",
    }
    wanted |= {"PRESIGN_EXPIRY_S", "NEAR_DUP_DISTANCE", "NEAR_DUP_POLICY"}
    env = {k: v for k, v in _env(container).items() if k.startswith("PIXELFLEET_CATALOG_")}
    assert {k.removeprefix("PIXELFLEET_CATALOG_") for k in env} == wanted
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    for name, value in env.items():
        text = _secret(defaults, value) if isinstance(value, dict) else value
        monkeypatch.setenv(
            name, text.replace("$(POD_NAME)", "c-0").replace("$(POD_NAMESPACE)", "ns")
        )
    settings = FleetSettings().catalog
    assert settings.store == VALUES["catalog"]["store"]
    assert (
        settings.max_body_bytes
        == VALUES["catalog"]["maxBodyBytes"]
        == CatalogSettings().max_body_bytes
    )
    assert settings.presign_expiry_s == VALUES["catalog"]["presignExpiryS"]
    assert settings.near_dup_policy == VALUES["catalog"]["nearDup"]["policy"]
    assert settings.advertised_url == "http://c-0.t-pixelfleet-catalog-peers.ns.svc:6066"
    assert len(settings.accepted_key_hashes()) == 1
    assert settings.acting_hashes() == frozenset() and settings.prometheus_url is None
    public = main_container(one(manifests(CI), "StatefulSet", "t-pixelfleet-catalog"))
    assert _env(public)["PIXELFLEET_CATALOG_PUBLIC_S3_ENDPOINT"] == "images.example.com:443"


def test_acting_keys_and_prometheus_come_from_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both variables as the service reads them: the acting digests (only those also
    accepted count) and the Prometheus the Fleet page asks."""
    acting = hashlib.sha256(b"an operator").hexdigest()
    docs = manifests(
        None,
        "--set",
        f"catalog.apiKeyHashes.extra[0]={acting}",
        "--set",
        f"catalog.actingKeyHashes[0]={acting}",
        "--set",
        "catalog.prometheusUrl=http://prometheus.monitoring.svc:9090",
    )
    env = _env(main_container(one(docs, "StatefulSet", "t-pixelfleet-catalog")))
    assert env["PIXELFLEET_CATALOG_PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    for name in ("ACTING_KEY_HASHES", "PROMETHEUS_URL", "API_KEY_HASHES"):
        value = env[f"PIXELFLEET_CATALOG_{name}"]
        text = _secret(docs, value) if isinstance(value, dict) else value
        monkeypatch.setenv(f"PIXELFLEET_CATALOG_{name}", text)
    settings = FleetSettings().catalog
    assert settings.acting_hashes() == {acting}
    assert settings.prometheus_url == "http://prometheus.monitoring.svc:9090"
    ci = _env(main_container(one(manifests(CI), "StatefulSet", "t-pixelfleet-catalog")))
    assert ci["PIXELFLEET_CATALOG_PROMETHEUS_URL"].startswith("http://prometheus-operated.")


def test_client_stages_get_the_service_url_and_the_key_the_catalog_accepts(
    defaults: list[dict[str, Any]],
) -> None:
    service = one(defaults, "Service", "t-pixelfleet-catalog")
    (port,) = service["spec"]["ports"]
    hashes = _secret(
        defaults,
        _env(main_container(one(defaults, "StatefulSet", "t-pixelfleet-catalog")))[
            "PIXELFLEET_CATALOG_API_KEY_HASHES"
        ],
    )
    assert re.fullmatch(r"[0-9a-f]{64}", hashes)
    for stage in STAGES:
        env = _env(main_container(one(defaults, "Deployment", f"t-pixelfleet-{stage}")))
        if stage not in DEFAULT_CLIENTS:
            assert not [n for n in env if n.startswith("PIXELFLEET_CATALOG_")], stage
            continue
        assert (
            env["PIXELFLEET_CATALOG_URL"] == f"http://{service['metadata']['name']}:{port['port']}"
        )
        key = _secret(defaults, env["PIXELFLEET_CATALOG_API_KEY"])
        assert len(key) >= 32 and hashlib.sha256(key.encode()).hexdigest() == hashes
        assert Settings.model_validate({"catalog": {"url": env["PIXELFLEET_CATALOG_URL"]}})
    assert "validate" in DEFAULT_CLIENTS and "fetch" not in DEFAULT_CLIENTS


def test_keys_from_values_and_from_existing_secrets() -> None:
    extra = hashlib.sha256(b"an outside client").hexdigest()
    docs = manifests(
        None,
        "--set",
        "catalog.apiKey.value=k-123",
        "--set",
        f"catalog.apiKeyHashes.extra={{{extra}}}",
    )
    assert (
        _secret(docs, {"secretKeyRef": {"name": "t-pixelfleet-catalog-client", "key": "api-key"}})
        == "k-123"
    )
    hashes = _secret(
        docs, {"secretKeyRef": {"name": "t-pixelfleet-catalog-keys", "key": "api-key-hashes"}}
    )
    assert hashes.split(",") == [hashlib.sha256(b"k-123").hexdigest(), extra]
    # The Secret the catalog reads holds no usable key.
    assert "k-123" not in yaml.safe_dump(one(docs, "Secret", "t-pixelfleet-catalog-keys"))

    docs = manifests(CI)  # both Secrets made outside the chart
    assert not [d for d in _catalog(docs) if d["kind"] == "Secret"]
    catalog = _env(main_container(one(docs, "StatefulSet", "t-pixelfleet-catalog")))
    assert catalog["PIXELFLEET_CATALOG_API_KEY_HASHES"] == {
        "secretKeyRef": {"name": "catalog-accepted", "key": "sha256s"}
    }
    validate = _env(main_container(one(docs, "Deployment", "t-pixelfleet-validate")))
    assert validate["PIXELFLEET_CATALOG_API_KEY"] == {
        "secretKeyRef": {"name": "catalog-client", "key": "key"}
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["catalog.apiKey.existingSecret=mine"], "cannot hash a key it does not see"),
        (["catalog.apiKeyHashes.existingSecret=mine"], "a generated client key would not be in it"),
        (["catalog.apiKey.value=k", "catalog.apiKey.existingSecret=mine"], "catalog/apiKey"),
        (["catalog.apiKeyHashes.extra={ABC}"], "apiKeyHashes/extra"),
        (["catalog.store=sqlite"], "catalog/store"),
        (["catalog.nearDup.policy=drop"], "catalog/nearDup/policy"),
        (["catalog.clientStages={ingest}"], "catalog/clientStages"),
        (["catalog.publicS3Endpoint=https://s3.example.com/bucket"], "publicS3Endpoint"),
    ],
)
def test_bad_catalog_values_fail_at_render(flags: list[str], message: str) -> None:
    result = render(None, *[a for flag in flags for a in ("--set", flag)])
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_disabled_catalog_leaves_nothing_behind() -> None:
    docs = manifests(None, "--set", "catalog.enabled=false", "--set", "serviceMonitor.enabled=true")
    assert _catalog(docs) == []
    assert "CATALOG" not in yaml.safe_dump_all(docs)


@pytest.mark.parametrize("values", [None, CI], ids=["defaults", "values-catalog"])
def test_replicas_do_not_outnumber_the_partitions(values: Path | None) -> None:
    docs = manifests(values)
    config = yaml.safe_load(one(docs, "ConfigMap", "t-pixelfleet-config")["data"]["config.yaml"])
    partitions = config.get("topics", {}).get("partitions", Settings().topics.partitions)
    assert one(docs, "StatefulSet", "t-pixelfleet-catalog")["spec"]["replicas"] <= partitions


def test_a_public_s3_endpoint_may_name_https_and_reaches_the_catalog() -> None:
    """S3 behind TLS for clients while the fleet talks plain http inside: the settings
    take the scheme (streams.config.settings), so the chart must let it through."""
    docs = manifests(None, "--set", "catalog.publicS3Endpoint=https://images.shop.test")
    catalog = one(docs, "StatefulSet", "t-pixelfleet-catalog")
    env = {e["name"]: e.get("value") for e in main_container(catalog)["env"]}
    assert env["PIXELFLEET_CATALOG_PUBLIC_S3_ENDPOINT"] == "https://images.shop.test"
