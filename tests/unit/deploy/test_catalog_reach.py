"""Who reaches the chart's catalog service: its PodDisruptionBudget, ServiceMonitor and
Ingress select its pods, and its NetworkPolicy admits the client stages, its peers,
the ingress controller and Prometheus, and lets it reach Kafka, S3 and DNS."""

from __future__ import annotations

from typing import Any

import pytest

from streams.config.topics import STAGES
from tests.unit.deploy.tools import CHART, main_container, manifests, one, pod_labels, selects

CI = CHART / "ci" / "values-catalog.yaml"


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return manifests(None)


def test_pdb_service_monitor_and_ingress_select_the_catalog(defaults: list[dict[str, Any]]) -> None:
    pdb = one(defaults, "PodDisruptionBudget", "t-pixelfleet-catalog")
    catalog = one(defaults, "StatefulSet", "t-pixelfleet-catalog")
    assert pdb["spec"]["maxUnavailable"] == 1 and selects(
        pdb["spec"]["selector"], pod_labels(catalog)
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
        if selects(own["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert scraped == ["t-pixelfleet-catalog-peers"]
    (endpoint,) = own["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {
        p["name"] for p in one(docs, "Service", scraped[0])["spec"]["ports"]
    }
    assert own["metadata"]["labels"]["release"] == "prometheus"
    stage_scraped = {
        s["metadata"]["name"]
        for s in services
        if selects(stages["spec"]["selector"], s["metadata"]["labels"])
    }
    assert stage_scraped == {f"t-pixelfleet-{s}" for s in STAGES}

    ingress = one(docs, "Ingress", "t-pixelfleet-catalog")
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
        if port in ports and any(selects(p["podSelector"], labels) for p in peers):
            return True
    return False


def test_network_policies_let_clients_and_peers_reach_the_catalog() -> None:
    docs = manifests(CI)
    catalog = one(docs, "StatefulSet", "t-pixelfleet-catalog")
    port = main_container(catalog)["ports"][0]["containerPort"]
    policy = one(docs, "NetworkPolicy", "t-pixelfleet-catalog")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert selects(spec["podSelector"], pod_labels(catalog))
    deployments = {s: one(docs, "Deployment", f"t-pixelfleet-{s}") for s in STAGES}
    assert not [s for s, d in deployments.items() if selects(spec["podSelector"], pod_labels(d))]
    clients = ["fetch", "validate", "compress"]  # ci/values-catalog.yaml
    for stage, deployment in deployments.items():
        assert _allows(spec["ingress"], "from", pod_labels(deployment), port) == (
            stage in clients
        ), stage
    assert _allows(spec["ingress"], "from", pod_labels(catalog), port)
    assert _allows(spec["egress"], "to", pod_labels(catalog), port)
    # The ingress controller and Prometheus from values, on the same port only.
    extra = spec["ingress"][1]
    assert len(extra["from"]) == 2 and extra["ports"] == [{"protocol": "TCP", "port": port}]
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert {53, 9092, 9000, port} <= egress_ports
    assert all(rule.get("to") for rule in spec["egress"])  # every peer named in this variant
    # fetch is a client here, so its own policy opens the catalog's port, and only that.
    fetch = one(docs, "NetworkPolicy", "t-pixelfleet-fetch")["spec"]["egress"]
    assert _allows(fetch, "to", pod_labels(catalog), port)
    default = manifests(None, "--set", "stages.fetch.networkPolicy.enabled=true")
    fetch = one(default, "NetworkPolicy", "t-pixelfleet-fetch")["spec"]["egress"]
    assert not _allows(
        fetch, "to", pod_labels(one(default, "StatefulSet", "t-pixelfleet-catalog")), port
    )


def test_a_kafka_rule_without_peers_opens_its_port_to_any_address() -> None:
    """The catalog has no internet rule: where no peers are named, Kafka and S3 must still
    be reachable on their ports."""
    docs = manifests(None, "--set", "catalog.networkPolicy.enabled=true")
    egress = one(docs, "NetworkPolicy", "t-pixelfleet-catalog")["spec"]["egress"]
    for port in (9092, 9000):
        (rule,) = [r for r in egress if {p["port"] for p in r["ports"]} == {port}]
        assert "to" not in rule
