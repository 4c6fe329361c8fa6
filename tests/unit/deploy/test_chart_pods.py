"""What the chart's pods need to start and to be replaced: no service-link variables the
settings loader would refuse, an init Job that can run before the release exists, GPU pods
that roll without a spare GPU, a restore stage without GPUs that sees none, KEDA given
credentials for a secured Kafka, and a startup probe that waits for the models. The docs'
claims about the chart and the dev stack are checked against what they describe."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streams.app.settings import Settings
from streams.config.settings import FleetSettings
from tests.unit.deploy.tools import CHART, ROOT, main_container, manifests, one, render

VARIANTS = [None, *sorted((CHART / "ci").glob("values-*.yaml"))]
GPU = "nvidia.com/gpu"


def _ids(values: Path | None) -> str:
    return values.stem if values else "defaults"


def _pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every workload's pod spec, by kind/name: whatever has a pod template."""
    return {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if "template" in d.get("spec", {})
    }


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _service_links(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The variables Kubernetes puts into a pod with enableServiceLinks for the Services
    with a cluster IP (headless ones get none), as the kubelet names them."""
    links: dict[str, str] = {}
    for service in (d for d in docs if d["kind"] == "Service"):
        if service["spec"].get("clusterIP") == "None":
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        ip = "10.96.0.10"
        ports = service["spec"]["ports"]
        links[f"{name}_SERVICE_HOST"] = ip
        links[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        links[f"{name}_PORT"] = f"tcp://{ip}:{ports[0]['port']}"
        for port in ports:
            proto = port.get("protocol", "TCP")
            if "name" in port:
                links[f"{name}_SERVICE_PORT_{port['name'].upper()}"] = str(port["port"])
            prefix = f"{name}_PORT_{port['port']}_{proto}"
            links[prefix] = f"{proto.lower()}://{ip}:{port['port']}"
            links[f"{prefix}_PROTO"] = proto.lower()
            links[f"{prefix}_PORT"] = str(port["port"])
            links[f"{prefix}_ADDR"] = ip
    return links


# -- 1. service links ------------------------------------------------------------------


def test_service_links_under_release_pixelfleet_would_stop_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why the pods turn them off: the catalog's Service under release `pixelfleet` names
    variables inside the settings' PIXELFLEET_ prefix, which the loader refuses."""
    docs = manifests(None, "--set", "notify.enabled=true", release="pixelfleet")
    links = _service_links(docs)
    assert "PIXELFLEET_CATALOG_PORT" in links and "PIXELFLEET_CATALOG_SERVICE_HOST" in links
    monkeypatch.delenv("PIXELFLEET_CONFIG", raising=False)
    for name, value in links.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="catalog"):
        FleetSettings()


@pytest.mark.parametrize("values", VARIANTS, ids=_ids)
def test_no_pod_gets_service_link_variables(values: Path | None) -> None:
    docs = manifests(values, "--set", "notify.enabled=true", release="pixelfleet")
    pods = _pods(docs)
    # The stages, the catalog, notify and the init Job: none may be left out.
    kinds = {key.split("/")[0] for key in pods}
    assert {"Deployment", "StatefulSet", "Job"} <= kinds
    assert "Deployment/pixelfleet-notify" in pods
    for key, pod in pods.items():
        assert pod.get("enableServiceLinks") is False, key


# -- 2. the init Job -------------------------------------------------------------------


def _hook(doc: dict[str, Any]) -> tuple[set[str], int] | None:
    annotations = doc["metadata"].get("annotations", {})
    if "helm.sh/hook" not in annotations:
        return None
    return (
        set(annotations["helm.sh/hook"].split(",")),
        int(annotations.get("helm.sh/hook-weight", "0")),
    )


def _named_by(pod: dict[str, Any]) -> set[tuple[str, str]]:
    """The (kind, name) of the objects a pod spec needs by name."""
    needed = set()
    if "serviceAccountName" in pod:
        needed.add(("ServiceAccount", pod["serviceAccountName"]))
    for volume in pod.get("volumes", []):
        sources = volume.get("projected", {}).get("sources", [volume])
        for source in sources:
            if "configMap" in source:
                needed.add(("ConfigMap", source["configMap"]["name"]))
            if "secret" in source:
                secret = source["secret"]  # a volume says secretName, a projection name
                needed.add(("Secret", secret.get("secretName") or secret["name"]))
    for container in pod["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "secretKeyRef" in ref:
                needed.add(("Secret", ref["secretKeyRef"]["name"]))
            if "configMapKeyRef" in ref:
                needed.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
    return needed


@pytest.mark.parametrize("values", VARIANTS, ids=_ids)
def test_the_init_job_needs_nothing_the_release_has_not_made_yet(values: Path | None) -> None:
    """At pre-install only hooks of a lower weight exist: whatever the chart renders that
    the Job names must be one."""
    docs = manifests(values)
    job = one(docs, "Job", "t-pixelfleet-init")
    events, weight = _hook(job) or (set(), 0)
    assert "pre-install" in events
    pod = job["spec"]["template"]["spec"]
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for needed in _named_by(pod):
        if needed in rendered:
            hook = _hook(rendered[needed])
            assert hook is not None, f"{needed} is not there yet when the init Job runs"
            assert "pre-install" in hook[0] and hook[1] < weight, needed
    # The chart's ServiceAccount is an ordinary object: the Job does not name it, and
    # without a token it needs none (init never calls the Kubernetes API).
    assert "serviceAccountName" not in pod
    assert pod["automountServiceAccountToken"] is False


def test_the_init_job_uses_an_existing_service_account_and_the_pull_secrets() -> None:
    docs = manifests(
        None,
        "--set", "serviceAccount.create=false",
        "--set", "serviceAccount.name=pixelfleet-runner",
        "--set", "imagePullSecrets[0].name=registry",
    )  # fmt: skip
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]
    pod = one(docs, "Job", "t-pixelfleet-init")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pixelfleet-runner"
    for key, other in _pods(docs).items():
        assert other["imagePullSecrets"] == [{"name": "registry"}], key
        assert other.get("serviceAccountName", "pixelfleet-runner") == "pixelfleet-runner", key
    without = one(manifests(None), "Job", "t-pixelfleet-init")["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in without


# -- 3. GPU pods roll without a spare GPU ----------------------------------------------


def _gpus(deployment: dict[str, Any]) -> int:
    return int(main_container(deployment)["resources"].get("limits", {}).get(GPU, 0))


@pytest.mark.parametrize("values", VARIANTS, ids=_ids)
def test_a_stage_with_gpus_never_surges(values: Path | None) -> None:
    """An old GPU pod goes before its replacement starts: a surge pod would need a GPU
    beyond those the stage holds and could stay Pending for good."""
    deployments = [d for d in manifests(values) if d["kind"] == "Deployment"]
    with_gpus = [d for d in deployments if _gpus(d)]
    if values is None or values.stem == "values-gpu":
        assert [d["metadata"]["name"] for d in with_gpus] == ["t-pixelfleet-restore"]
    for deployment in with_gpus:
        strategy = deployment["spec"]["strategy"]
        if strategy["type"] == "RollingUpdate":
            assert strategy["rollingUpdate"]["maxSurge"] == 0
            assert strategy["rollingUpdate"]["maxUnavailable"] == 1
        else:
            assert strategy == {"type": "Recreate"}
    for deployment in deployments:
        if not _gpus(deployment) and "restore" not in deployment["metadata"]["name"]:
            assert "strategy" not in deployment["spec"]  # Kubernetes' default


def test_a_recreate_strategy_drops_the_rolling_update_it_inherits() -> None:
    docs = manifests(None, "--set", "stages.restore.strategy.type=Recreate")
    assert one(docs, "Deployment", "t-pixelfleet-restore")["spec"]["strategy"] == {
        "type": "Recreate"
    }


# -- 4. restore without GPUs -----------------------------------------------------------


def test_restore_with_gpus_keeps_its_gpu_scheduling() -> None:
    restore = one(manifests(CHART / "ci" / "values-gpu.yaml"), "Deployment", "t-pixelfleet-restore")
    pod = restore["spec"]["template"]["spec"]
    assert _gpus(restore) == 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == GPU for t in pod["tolerations"])
    env = _env(main_container(restore))
    assert "NVIDIA_VISIBLE_DEVICES" not in env and "PIXELFLEET_STAGES" not in env


def test_restore_without_gpus_sees_none_and_runs_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = manifests(
        CHART / "ci" / "values-gpu.yaml",
        "--set", "stages.restore.gpus=0",
        "--set", "stages.restore.nodeSelector.disk=ssd",
        "--set-json", 'stages.restore.tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"},'
        ' {"key": "team", "operator": "Equal", "value": "images", "effect": "NoSchedule"}]',
        "--set", "config.stages.restore.device=cuda",
        "--set", "config.stages.restore.concurrency=3",
    )  # fmt: skip
    restore = one(docs, "Deployment", "t-pixelfleet-restore")
    pod = restore["spec"]["template"]["spec"]
    container = main_container(restore)
    assert _gpus(restore) == 0 and GPU not in str(container["resources"])
    # Only what exists for GPUs goes: the other node selector and toleration stay.
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert [t["key"] for t in pod["tolerations"]] == ["team"]
    env = _env(container)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    # The worker's settings, as the pod reads them: the file, then its literal variables.
    config = one(docs, "ConfigMap", "t-pixelfleet-config")["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(config)
    for name, value in env.items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIXELFLEET_CONFIG", str(tmp_path / "config.yaml"))
    restore_settings = Settings().stages.restore
    assert restore_settings.device == "cpu"
    assert restore_settings.concurrency == 3  # the rest of the file's section stays


# -- 5. KEDA and a secured Kafka -------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--set", "config.kafka.security_protocol=SASL_SSL"],
        ["--set", "config.kafka.security_protocol=SSL"],
        ["--set", "kafkaSecret.name=kafka-credentials"],
    ],
    ids=["sasl_ssl", "ssl", "secret"],
)
def test_keda_must_be_given_credentials_for_a_secured_kafka(flags: list[str]) -> None:
    refused = render(None, *flags)
    assert refused.returncode != 0
    assert "autoscaler.keda.authenticationRef is empty" in refused.stderr, refused.stderr
    assert "TriggerAuthentication" in refused.stderr
    docs = manifests(None, *flags, "--set", "autoscaler.keda.authenticationRef=kafka-auth")
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    assert scaled
    assert all(
        d["spec"]["triggers"][0]["authenticationRef"] == {"name": "kafka-auth"} for d in scaled
    )
    # Without KEDA nothing else reads the lag: nothing to refuse.
    assert render(None, *flags, "--set", "autoscaler.kind=hpa").returncode == 0


# -- 6. the restore startup probe ------------------------------------------------------


def test_restore_is_started_once_its_worker_is_ready() -> None:
    """/healthz answers while the models load; /readyz only once the worker runs, so the
    startup budget (and not the liveness probe) covers the load."""
    container = main_container(one(manifests(None), "Deployment", "t-pixelfleet-restore"))
    startup = container["startupProbe"]
    assert startup["httpGet"] == container["readinessProbe"]["httpGet"]
    assert startup["httpGet"]["path"] == "/readyz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


# -- 7. the docs -----------------------------------------------------------------------

NUMBERS = {"five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def test_deploy_doc_lists_every_alert_of_the_chart() -> None:
    docs = manifests(None, "--set", "prometheusRule.enabled=true")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    text = (ROOT / "docs" / "deploy.md").read_text()
    said = re.search(r"PrometheusRule has (\w+) alerts", text)
    assert said, "docs/deploy.md no longer says how many alerts the PrometheusRule has"
    assert NUMBERS.get(said.group(1)) == len(alerts), said.group(0)
    assert [a for a in alerts if f"`{a}`" not in text] == []


def test_devstack_doc_asks_for_the_go_the_minio_build_needs() -> None:
    from streams.devstack import minio

    needed = re.search(r"Go (\d+\.\d+) or newer", minio.GO_HINT)
    assert needed
    text = (ROOT / "docs" / "devstack.md").read_text()
    assert f"Go {needed.group(1)}" in text
    assert "Go 1.21+ must" not in text


# -- the process pool --------------------------------------------------------------------


def test_the_pool_is_sized_by_the_cpu_request_unless_configured() -> None:
    """Without a CPU limit the container sees the node's cores: 64 processes on a 64-core
    node for a pod that asked for half a CPU. The request (rounded up) sizes it instead."""
    field = {"containerName": "worker", "resource": "requests.cpu", "divisor": "1"}
    for name in ("validate", "compress"):
        stage = one(manifests(None), "Deployment", f"t-pixelfleet-{name}")
        assert _env(main_container(stage))["PIXELFLEET_RUNNER_POOL_WORKERS"] == {
            "resourceFieldRef": field
        }
    configured = one(
        manifests(None, "--set", "config.runner.pool_workers=3"),
        "Deployment",
        "t-pixelfleet-validate",
    )
    assert "PIXELFLEET_RUNNER_POOL_WORKERS" not in _env(main_container(configured))
