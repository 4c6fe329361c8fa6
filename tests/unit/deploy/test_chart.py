"""The Helm chart, rendered with real helm and checked by kubeconform in strict mode against
offline schemas: Kubernetes' from the kubernetes-validate package, the CRDs' converted and
kept in deploy/helm/crd-schemas."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.app.settings import Settings
from streams.config.topics import STAGES, Topics
from streams.stages.fetch.settings import FetchSettings
from streams.stages.settings import StageSettings
from tests.unit.deploy.tools import CHART, DEPLOY, KUBE, tool
from tests.unit.deploy.tools import manifests as _docs
from tests.unit.deploy.tools import render as _render

CRDS = DEPLOY / "helm" / "crd-schemas"
VARIANTS = [None, *sorted((CHART / "ci").glob("values-*.yaml"))]


def _standalone_schemas(target: Path) -> Path:
    """kubernetes-validate's schemas point into a shared _definitions.json through
    absolute refs kubeconform cannot follow; inline the definitions into each file."""
    import kubernetes_validate

    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = source / f"v{KUBE}-local-strict"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    out = target / f"v{KUBE}-standalone-strict"
    out.mkdir(parents=True)
    for path in source.glob("*.json"):
        if path.name.startswith("_"):
            continue
        text = path.read_text().replace("/api/_definitions.json#/$defs/", "#/$defs/")
        schema = json.loads(text)
        schema["$defs"] = json.loads(
            json.dumps(definitions).replace("/api/_definitions.json#/$defs/", "#/$defs/")
        )
        (out / path.name).write_text(json.dumps(schema))
    return target


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _standalone_schemas(tmp_path_factory.mktemp("k8s-schemas"))


def test_lint() -> None:
    result = subprocess.run(
        [tool("helm"), "lint", str(CHART), "--kube-version", KUBE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VARIANTS, ids=lambda v: v.stem if v else "defaults")
def test_every_variant_renders_valid_manifests(schemas: Path, values: Path | None) -> None:
    rendered = _render(values)
    assert rendered.returncode == 0, rendered.stderr
    checked = subprocess.run(
        [
            tool("kubeconform"),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            KUBE,
            "-schema-location",
            str(schemas) + "/{{ .NormalizedKubernetesVersion }}-standalone-strict/"
            "{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            str(CRDS) + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
        ],
        input=rendered.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(checked.stdout)
    assert checked.returncode == 0, json.dumps(report["resources"], indent=1)[:4000]
    summary = report["summary"]
    assert summary["invalid"] == 0 and summary["errors"] == 0 and summary["skipped"] == 0
    assert summary["valid"] >= 20


def test_variants_render_what_they_promise() -> None:
    kinds = {
        (v.stem if v else "defaults"): re.findall(r"^kind: (\w+)", _render(v).stdout, re.M)
        for v in VARIANTS
    }
    assert kinds["defaults"].count("ScaledObject") == len(STAGES)
    assert "HorizontalPodAutoscaler" not in kinds["defaults"]
    assert "NetworkPolicy" not in kinds["defaults"]
    assert kinds["values-hpa"].count("HorizontalPodAutoscaler") == len(STAGES) - 1  # no categorize
    assert "ScaledObject" not in kinds["values-hpa"]
    assert {"ServiceMonitor", "PrometheusRule"} <= set(kinds["values-gpu"])
    gpu = _render(CHART / "ci" / "values-gpu.yaml").stdout
    assert "nvidia.com/gpu: 2" in gpu
    sasl = _render(CHART / "ci" / "values-sasl.yaml").stdout
    assert "PIXELFLEET_KAFKA_SASL_PASSWORD" in sasl and "name: kafka-sasl" in sasl
    assert 'consumerGroup: "shop.images.validate"' in sasl
    assert 'topic: "shop.images.ingest"' in sasl
    assert 'consumerGroup: "shop.images.fetch"' in sasl and 'topic: "shop.images.fetch"' in sasl
    assert kinds["values-fetch"].count("NetworkPolicy") == 1


def test_kafka_ca_reaches_every_container_as_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """With kafkaTls.caSecret, each container's kafka.ssl_ca_location names the mounted file."""
    docs = [d for d in yaml.safe_load_all(_render(CHART / "ci" / "values-sasl.yaml").stdout) if d]
    kinds = ("Deployment", "Job", "StatefulSet")
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in kinds]
    assert len(pods) == len(STAGES) + 2  # the stages, the init Job and the catalog
    for pod in pods:
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        location = Path(env["PIXELFLEET_KAFKA_SSL_CA_LOCATION"])
        monkeypatch.setenv("PIXELFLEET_KAFKA_SSL_CA_LOCATION", str(location))
        assert Settings().kafka.librdkafka()["ssl.ca.location"] == str(location)
        mount = next(m for m in container["volumeMounts"] if m["name"] == "kafka-tls")
        volume = next(v for v in pod["volumes"] if v["name"] == "kafka-tls")
        assert location.parent == Path(mount["mountPath"]) and mount["readOnly"]
        assert volume["secret"]["secretName"] == "kafka-ca"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": location.name}]
    plain = _render(None).stdout
    assert "kafka-tls" not in plain and "SSL_CA_LOCATION" not in plain


@pytest.mark.parametrize("values", VARIANTS, ids=lambda v: v.stem if v else "defaults")
def test_scaled_objects_wake_for_one_image_and_stay_within_partitions(values: Path | None) -> None:
    """KEDA v2.18's kafka scaler is active while lag > activationLagThreshold (strictly),
    and caps replicas at the partition count; our values must suit both."""
    docs = [d for d in yaml.safe_load_all(_render(values).stdout) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"])
    topics = yaml.safe_load(config["data"]["config.yaml"]).get("topics", {})
    partitions = topics.get("partitions", Settings().topics.partitions)
    for scaled in (d for d in docs if d["kind"] == "ScaledObject"):
        spec = scaled["spec"]
        (trigger,) = spec["triggers"]
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
        assert spec["maxReplicaCount"] <= partitions, scaled["metadata"]["name"]
        if spec["minReplicaCount"] == 0:
            assert int(trigger["metadata"]["activationLagThreshold"]) == 0, (
                f"{scaled['metadata']['name']} would not wake for a single image"
            )


def test_bad_values_fail_at_render(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: {restore: {autoscaling: {lagThreshold: 20}}}\nautoscaler: {kind: x}\n")
    result = _render(bad)
    assert result.returncode != 0
    assert "lagThreshold" in result.stderr and "autoscaler/kind" in result.stderr
    short = _render(None, "--set", "stageDefaults.terminationGracePeriodSeconds=10")
    assert short.returncode != 0 and "must exceed config.runner.grace_s" in short.stderr


def _of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The documents of one kind by their component label (the stage)."""
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in docs if d["kind"] == kind
    }


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    name = "t-pixelfleet-config"
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
    return yaml.safe_load(config["data"]["config.yaml"])  # type: ignore[no-any-return]


def test_the_charts_stages_are_the_pipelines_in_its_order() -> None:
    docs = _docs(None)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ScaledObject"):
        # The catalog's own Services and budget are checked in test_catalog_chart.py.
        assert [c for c in _of_kind(docs, kind) if c != "catalog"] == list(STAGES), kind


@pytest.mark.parametrize("values", VARIANTS, ids=lambda v: v.stem if v else "defaults")
def test_every_stage_scales_on_its_own_inbox_and_group(values: Path | None) -> None:
    """The ScaledObject watches the topic the worker consumes with the group it commits as
    (streams/config/topics.py), so KEDA's lag is the stage's real backlog."""
    docs = _docs(values)
    topics = Topics(_config(docs)["topic_prefix"])
    deployments = _of_kind(docs, "Deployment")
    for stage, scaled in _of_kind(docs, "ScaledObject").items():
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["metadata"]["topic"] == topics.inbox(stage)
        assert trigger["metadata"]["consumerGroup"] == topics.group(stage)
        target = deployments[stage]
        assert scaled["spec"]["scaleTargetRef"]["name"] == target["metadata"]["name"]
        (container,) = target["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["worker", "--stage", stage]


def test_fetch_runs_on_the_cpu_image_sized_for_io_and_scales_on_its_own_lag() -> None:
    docs = _docs(None)
    fetch = _of_kind(docs, "Deployment")["fetch"]
    (container,) = fetch["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["worker", "--stage", "fetch"]
    assert container["image"] == "ghcr.io/pixelfleet/pixelfleet:0.1.0"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert "startupProbe" not in container  # nothing to load before the first download
    trigger = _of_kind(docs, "ScaledObject")["fetch"]["spec"]["triggers"][0]["metadata"]
    assert trigger["topic"] == "pixelfleet.fetch"
    assert trigger["consumerGroup"] == "pixelfleet.fetch"
    assert trigger["lagThreshold"] == "100"
    sasl = _of_kind(_docs(CHART / "ci" / "values-sasl.yaml"), "ScaledObject")["fetch"]
    metadata = sasl["spec"]["triggers"][0]["metadata"]
    assert (metadata["topic"], metadata["consumerGroup"]) == ("shop.images.fetch",) * 2
    assert sasl["spec"]["triggers"][0]["authenticationRef"] == {"name": "kafka-sasl"}


def _selects(policy: dict[str, Any], deployment: dict[str, Any]) -> bool:
    wanted = policy["spec"]["podSelector"]["matchLabels"].items()
    return bool(wanted <= deployment["spec"]["template"]["metadata"]["labels"].items())


def _in(address: str, cidrs: list[str]) -> bool:
    return any(ipaddress.ip_address(address) in ipaddress.ip_network(c) for c in cidrs)


INTERNAL = ["10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "127.0.0.1"]


def test_fetch_network_policy_defaults_keep_it_off_internal_networks() -> None:
    docs = _docs(None, "--set", "stages.fetch.networkPolicy.enabled=true")
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deployments = _of_kind(docs, "Deployment")
    assert [s for s in STAGES if _selects(policy, deployments[s])] == ["fetch"]
    assert policy["spec"]["policyTypes"] == ["Egress"]  # the metrics scrape stays open
    internet, *others = policy["spec"]["egress"]
    (peer,) = internet["to"]
    assert peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert all(_in(a, peer["ipBlock"]["except"]) for a in INTERNAL)
    assert not _in("93.184.215.14", peer["ipBlock"]["except"])
    # The ports the worker fetches from when the config names none: FetchSettings' own.
    ports = [p["port"] for p in internet["ports"]]
    assert sorted(ports) == sorted(FetchSettings().allowed_ports)
    # DNS only: kafka and s3 have no peers by default, so no rule (never one without `to`,
    # which would open their ports to every address).
    (dns,) = others
    assert dns["to"] and {p["port"] for p in dns["ports"]} == {53}


def test_fetch_network_policy_follows_the_workers_settings() -> None:
    """values-fetch: in-cluster Kafka and MinIO, an internal CDN in allow_networks."""
    docs = _docs(CHART / "ci" / "values-fetch.yaml")
    settings = StageSettings.model_validate(_config(docs)["stages"]).fetch
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert _selects(policy, _of_kind(docs, "Deployment")["fetch"])
    egress = policy["spec"]["egress"]
    assert all(rule.get("to") for rule in egress)
    ports = sorted(settings.allowed_ports)
    internet, admitted = egress[0], egress[1]
    assert sorted(p["port"] for p in internet["ports"]) == ports == [80, 443, 8443]
    assert sorted(p["port"] for p in admitted["ports"]) == ports
    cidrs = [peer["ipBlock"]["cidr"] for peer in admitted["to"]]
    assert cidrs == ["10.20.0.0/16", "10.30.0.7/32"]  # a bare address becomes a /32
    for network in settings.allow_networks:
        assert ipaddress.ip_network(network) in [ipaddress.ip_network(c) for c in cidrs]
    kafka = next(r for r in egress if {p["port"] for p in r.get("ports", [])} == {9092})
    assert kafka["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kafka"
    }
    assert any(r["ports"] == [{"port": 9000, "protocol": "TCP"}] for r in egress)  # MinIO
    assert egress[-1]["ports"] == [{"port": 4317, "protocol": "TCP"}]  # extraEgress


def test_network_policy_values_are_checked() -> None:
    for where in ("stages.validate", "stageDefaults"):
        wrong = _render(None, "--set", f"{where}.networkPolicy.enabled=true")
        assert wrong.returncode != 0
        assert f"{where}.networkPolicy: only the fetch stage" in wrong.stderr
    bare = _render(None, "--set", "stages.fetch.networkPolicy.except={10.0.0.0}")
    assert bare.returncode != 0 and "except" in bare.stderr
    ports = _render(None, "--set", "config.stages.fetch.allowed_ports={http}")
    assert ports.returncode != 0 and "allowed_ports" in ports.stderr


def test_the_longest_release_name_still_gives_valid_names() -> None:
    """helm allows 53 characters; every name must stay a DNS label (63), and a StatefulSet's
    at most 52, as its pods' controller-revision-hash label appends 11 characters."""
    release = "r" * 53
    rendered = subprocess.run(
        [tool("helm"), "template", release, str(CHART), "--kube-version", KUBE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= (52 if doc["kind"] == "StatefulSet" else 63), (doc["kind"], name)
    assert "StatefulSet" in {d["kind"] for d in docs}
