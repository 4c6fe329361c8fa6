"""The Helm chart, rendered with real helm and checked by kubeconform in strict mode against
offline schemas: Kubernetes' from the kubernetes-validate package, the CRDs' converted and
kept in deploy/helm/crd-schemas."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.app.settings import Settings
from tests.unit.deploy.tools import CHART, DEPLOY, tool

CRDS = DEPLOY / "helm" / "crd-schemas"
KUBE = "1.30.0"
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


def _render(values: Path | None, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [tool("helm"), "template", "t", str(CHART), "--kube-version", KUBE]
    if values is not None:
        args += ["-f", str(values)]
    return subprocess.run([*args, *extra], capture_output=True, text=True, check=False)


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
    assert kinds["defaults"].count("ScaledObject") == 5
    assert "HorizontalPodAutoscaler" not in kinds["defaults"]
    assert kinds["values-hpa"].count("HorizontalPodAutoscaler") == 4  # categorize is off
    assert "ScaledObject" not in kinds["values-hpa"]
    assert {"ServiceMonitor", "PrometheusRule"} <= set(kinds["values-gpu"])
    gpu = _render(CHART / "ci" / "values-gpu.yaml").stdout
    assert "nvidia.com/gpu: 2" in gpu
    sasl = _render(CHART / "ci" / "values-sasl.yaml").stdout
    assert "PIXELFLEET_KAFKA_SASL_PASSWORD" in sasl and "name: kafka-sasl" in sasl
    assert 'consumerGroup: "shop.images.validate"' in sasl
    assert 'topic: "shop.images.ingest"' in sasl


def test_kafka_ca_reaches_every_container_as_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """With kafkaTls.caSecret, each container's kafka.ssl_ca_location names the mounted file."""
    docs = [d for d in yaml.safe_load_all(_render(CHART / "ci" / "values-sasl.yaml").stdout) if d]
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]
    assert len(pods) == 6  # five stages and the init Job
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
