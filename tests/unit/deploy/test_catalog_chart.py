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
from tests.unit.deploy.tools import CHART, manifests, render

CI = CHART / "ci" / "values-catalog.yaml"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DEFAULT_CLIENTS = VALUES["catalog"]["clientStages"]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _catalog(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "catalog"
    ]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    """name -> its literal value, or its valueFrom where it has one."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _secret(docs: list[dict[str, Any]], ref: dict[str, Any]) -> str:
    ref = ref["secretKeyRef"]
    return base64.b64decode(_one(docs, "Secret", ref["name"])["data"][ref["key"]]).decode()


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In / NotIn expressions) against labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for rule in selector.get("matchExpressions", []):
        inside = labels.get(rule["key"]) in rule["values"]
        if inside != (rule["operator"] == "In"):
            return False
    return True


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return manifests(None)


def test_catalog_runs_as_a_statefulset_on_the_cpu_image(defaults: list[dict[str, Any]]) -> None:
    catalog = _one(defaults, "StatefulSet", "t-pixelfleet-catalog")
    container = _container(catalog)
    assert container["args"] == ["catalog"]
    assert container["image"] == "ghcr.io/pixelfleet/pixelfleet:0.1.0"
    assert catalog["spec"]["replicas"] == VALUES["catalog"]["replicas"]
    # The same hardening as the stages' pods.
    validate = next(
        d for d in defaults if d["kind"] == "Deployment" and "validate" in d["metadata"]["name"]
    )
    assert container["securityContext"] == _container(validate)["securityContext"]
    pod = catalog["spec"]["template"]["spec"]
    assert (
        pod["securityContext"].items()
        >= validate["spec"]["template"]["spec"]["securityContext"].items()
    )
    assert container["resources"] == VALUES["catalog"]["resources"]
    assert _selects(catalog["spec"]["selector"], _pod_labels(catalog))


def test_its_probes_and_port_are_the_ones_it_serves(defaults: list[dict[str, Any]]) -> None:
    container = _container(_one(defaults, "StatefulSet", "t-pixelfleet-catalog"))
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
    catalog = _one(defaults, "StatefulSet", "t-pixelfleet-catalog")
    container = _container(catalog)
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
    ephemeral = _one(
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
    catalog = _one(defaults, "StatefulSet", "t-pixelfleet-catalog")
    peers = _one(defaults, "Service", catalog["spec"]["serviceName"])
    assert peers["spec"]["clusterIP"] == "None" and peers["spec"]["publishNotReadyAddresses"]
    assert peers["spec"]["selector"].items() <= _pod_labels(catalog).items()
    env = _container(catalog)["env"]
    names = [e["name"] for e in env]
    values = _env(_container(catalog))
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
    service = _one(defaults, "Service", "t-pixelfleet-catalog")
    assert "clusterIP" not in service["spec"] and not service["spec"].get(
        "publishNotReadyAddresses"
    )
    assert service["spec"]["ports"] == peers["spec"]["ports"]


def test_every_catalog_variable_is_a_setting_the_service_reads(
    defaults: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered variables, Secret included, load into the settings model without error
    (a misspelt name is an error there, not a default) and mean what values say."""
    container = _container(_one(defaults, "StatefulSet", "t-pixelfleet-catalog"))
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
    public = _container(_one(manifests(CI), "StatefulSet", "t-pixelfleet-catalog"))
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
    env = _env(_container(_one(docs, "StatefulSet", "t-pixelfleet-catalog")))
    assert env["PIXELFLEET_CATALOG_PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    for name in ("ACTING_KEY_HASHES", "PROMETHEUS_URL", "API_KEY_HASHES"):
        value = env[f"PIXELFLEET_CATALOG_{name}"]
        text = _secret(docs, value) if isinstance(value, dict) else value
        monkeypatch.setenv(f"PIXELFLEET_CATALOG_{name}", text)
    settings = FleetSettings().catalog
    assert settings.acting_hashes() == {acting}
    assert settings.prometheus_url == "http://prometheus.monitoring.svc:9090"
    ci = _env(_container(_one(manifests(CI), "StatefulSet", "t-pixelfleet-catalog")))
    assert ci["PIXELFLEET_CATALOG_PROMETHEUS_URL"].startswith("http://prometheus-operated.")


def test_client_stages_get_the_service_url_and_the_key_the_catalog_accepts(
    defaults: list[dict[str, Any]],
) -> None:
    service = _one(defaults, "Service", "t-pixelfleet-catalog")
    (port,) = service["spec"]["ports"]
    hashes = _secret(
        defaults,
        _env(_container(_one(defaults, "StatefulSet", "t-pixelfleet-catalog")))[
            "PIXELFLEET_CATALOG_API_KEY_HASHES"
        ],
    )
    assert re.fullmatch(r"[0-9a-f]{64}", hashes)
    for stage in STAGES:
        env = _env(_container(_one(defaults, "Deployment", f"t-pixelfleet-{stage}")))
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
    assert "k-123" not in yaml.safe_dump(_one(docs, "Secret", "t-pixelfleet-catalog-keys"))

    docs = manifests(CI)  # both Secrets made outside the chart
    assert not [d for d in _catalog(docs) if d["kind"] == "Secret"]
    catalog = _env(_container(_one(docs, "StatefulSet", "t-pixelfleet-catalog")))
    assert catalog["PIXELFLEET_CATALOG_API_KEY_HASHES"] == {
        "secretKeyRef": {"name": "catalog-accepted", "key": "sha256s"}
    }
    validate = _env(_container(_one(docs, "Deployment", "t-pixelfleet-validate")))
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
        (["catalog.publicS3Endpoint=https://s3.example.com"], "publicS3Endpoint"),
    ],
)
def test_bad_catalog_values_fail_at_render(flags: list[str], message: str) -> None:
    result = render(None, *[a for flag in flags for a in ("--set", flag)])
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_disabled_catalog_leaves_nothing_behind() -> None:
    docs = manifests(None, "--set", "catalog.enabled=false", "--set", "serviceMonitor.enabled=true")
    assert _catalog(docs) == []
    assert "CATALOG" not in yaml.safe_dump_all(docs)


def test_pdb_service_monitor_and_ingress_select_the_catalog(defaults: list[dict[str, Any]]) -> None:
    pdb = _one(defaults, "PodDisruptionBudget", "t-pixelfleet-catalog")
    catalog = _one(defaults, "StatefulSet", "t-pixelfleet-catalog")
    assert pdb["spec"]["maxUnavailable"] == 1 and _selects(
        pdb["spec"]["selector"], _pod_labels(catalog)
    )
    assert not [
        d for d in defaults if d["kind"] in ("ServiceMonitor", "Ingress")
    ]  # both behind flags

    docs = manifests(CI)
    services = [d for d in docs if d["kind"] == "Service"]
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceMonitor"}
    own, stages = monitors.pop("t-pixelfleet-catalog"), monitors.pop("t-pixelfleet")
    assert not monitors
    # The catalog's ServiceMonitor scrapes /metrics through the headless Service only (every
    # replica, ready or not, once); the stages' one no longer picks up either catalog Service.
    scraped = [
        s["metadata"]["name"]
        for s in services
        if _selects(own["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert scraped == ["t-pixelfleet-catalog-peers"]
    (endpoint,) = own["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {
        p["name"] for p in _one(docs, "Service", scraped[0])["spec"]["ports"]
    }
    assert own["metadata"]["labels"]["release"] == "prometheus"
    stage_scraped = {
        s["metadata"]["name"]
        for s in services
        if _selects(stages["spec"]["selector"], s["metadata"]["labels"])
    }
    assert stage_scraped == {f"t-pixelfleet-{s}" for s in STAGES}

    ingress = _one(docs, "Ingress", "t-pixelfleet-catalog")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "catalog-example-com-tls", "hosts": ["catalog.example.com"]}
    ]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "catalog.example.com"
    (path,) = rule["http"]["paths"]  # the API only: /metrics stays inside the cluster
    assert (path["path"], path["pathType"]) == ("/v1", "Prefix")
    assert path["backend"]["service"] == {"name": "t-pixelfleet-catalog", "port": {"name": "http"}}


def _allows(rules: list[dict[str, Any]], side: str, labels: dict[str, str], port: int) -> bool:
    """Does a list of NetworkPolicy rules admit pods with these labels (same namespace)?"""
    for rule in rules:
        ports = {p["port"] for p in rule.get("ports", [])}
        peers = [p for p in rule.get(side, []) if set(p) == {"podSelector"}]
        if port in ports and any(_selects(p["podSelector"], labels) for p in peers):
            return True
    return False


def test_network_policies_let_clients_and_peers_reach_the_catalog() -> None:
    docs = manifests(CI)
    catalog = _one(docs, "StatefulSet", "t-pixelfleet-catalog")
    port = _container(catalog)["ports"][0]["containerPort"]
    policy = _one(docs, "NetworkPolicy", "t-pixelfleet-catalog")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert _selects(spec["podSelector"], _pod_labels(catalog))
    deployments = {s: _one(docs, "Deployment", f"t-pixelfleet-{s}") for s in STAGES}
    assert not [s for s, d in deployments.items() if _selects(spec["podSelector"], _pod_labels(d))]
    clients = ["fetch", "validate", "compress"]  # ci/values-catalog.yaml
    for stage, deployment in deployments.items():
        assert _allows(spec["ingress"], "from", _pod_labels(deployment), port) == (
            stage in clients
        ), stage
    assert _allows(spec["ingress"], "from", _pod_labels(catalog), port)
    assert _allows(spec["egress"], "to", _pod_labels(catalog), port)
    # The ingress controller and Prometheus from values, on the same port only.
    extra = spec["ingress"][1]
    assert len(extra["from"]) == 2 and extra["ports"] == [{"protocol": "TCP", "port": port}]
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert {53, 9092, 9000, port} <= egress_ports
    assert all(rule.get("to") for rule in spec["egress"])  # every peer named in this variant
    # fetch is a client here, so its own policy opens the catalog's port, and only that.
    fetch = _one(docs, "NetworkPolicy", "t-pixelfleet-fetch")["spec"]["egress"]
    assert _allows(fetch, "to", _pod_labels(catalog), port)
    default = manifests(None, "--set", "stages.fetch.networkPolicy.enabled=true")
    fetch = _one(default, "NetworkPolicy", "t-pixelfleet-fetch")["spec"]["egress"]
    assert not _allows(
        fetch, "to", _pod_labels(_one(default, "StatefulSet", "t-pixelfleet-catalog")), port
    )


def test_a_kafka_rule_without_peers_opens_its_port_to_any_address() -> None:
    """The catalog has no internet rule: where no peers are named, Kafka and S3 must still
    be reachable on their ports."""
    docs = manifests(None, "--set", "catalog.networkPolicy.enabled=true")
    egress = _one(docs, "NetworkPolicy", "t-pixelfleet-catalog")["spec"]["egress"]
    for port in (9092, 9000):
        (rule,) = [r for r in egress if {p["port"] for p in r["ports"]} == {port}]
        assert "to" not in rule


@pytest.mark.parametrize("values", [None, CI], ids=["defaults", "values-catalog"])
def test_replicas_do_not_outnumber_the_partitions(values: Path | None) -> None:
    docs = manifests(values)
    config = yaml.safe_load(_one(docs, "ConfigMap", "t-pixelfleet-config")["data"]["config.yaml"])
    partitions = config.get("topics", {}).get("partitions", Settings().topics.partitions)
    assert _one(docs, "StatefulSet", "t-pixelfleet-catalog")["spec"]["replicas"] <= partitions
