"""The notify worker's deployment pieces: its chart component (templates/notify/), its
dashboard row and its alert on an open circuit breaker, evaluated by promtool on made-up
series. kubeconform checks the manifests in test_chart.py (ci/values-notify.yaml is one of
its variants); this file checks what they mean."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import streams.observe.metrics  # noqa: F401 (registers every metric)
from tests.unit.deploy.tools import (
    CHART,
    alert_rules,
    manifests,
    one,
    promtool_test,
    render,
)

CI = CHART / "ci" / "values-notify.yaml"
ALERT = "PixelfleetWebhookBreakerOpen"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket",), "gauge": ("",)}


def test_notify_is_off_by_default() -> None:
    docs = manifests(None)
    assert not [d for d in docs if d["metadata"]["name"].endswith("-notify")]


def test_the_notify_deployment_runs_the_worker_with_its_secrets_and_probes() -> None:
    docs = manifests(CI)
    deployment = one(docs, "Deployment", "t-pixelfleet-notify")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["notify"]
    assert container["image"].startswith("ghcr.io/pixelfleet/pixelfleet:")  # the CPU image
    env = {e["name"]: e for e in container["env"]}
    assert env["PIXELFLEET_CONFIG"]["value"] == "/etc/pixelfleet/config.yaml"
    assert env["CRM_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "crm-webhook",
        "key": "secret",
    }
    assert env["FEED_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "hmac"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["terminationGracePeriodSeconds"] == 60
    # The subscriptions reach the worker through the settings file, without the secrets.
    config = yaml.safe_load(one(docs, "ConfigMap", "t-pixelfleet-config")["data"]["config.yaml"])
    subs = config["notify"]["subscriptions"]
    assert [s["secret_env"] for s in subs] == ["CRM_WEBHOOK_SECRET", "FEED_WEBHOOK_SECRET"]
    assert all("secret" not in s for s in subs)
    # A headless Service with the metrics port: the workers' ServiceMonitor scrapes it.
    service = one(docs, "Service", "t-pixelfleet-notify")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["name"] == "metrics"
    monitor = one(docs, "ServiceMonitor", "t-pixelfleet")
    excluded = monitor["spec"]["selector"]["matchExpressions"][0]["values"]
    assert "notify" not in excluded


def test_the_charts_config_is_one_the_worker_accepts(tmp_path: Path) -> None:
    from streams.config.notify import NotifySettings
    from streams.config.settings import load_config_file

    docs = manifests(CI)
    text = one(docs, "ConfigMap", "t-pixelfleet-config")["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(text)
    notify = NotifySettings.model_validate(load_config_file(tmp_path / "config.yaml")["notify"])
    assert [s.name for s in notify.subscriptions] == ["crm", "rings-feed"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "notify.terminationGracePeriodSeconds=15"], "must exceed config.notify.drain_s"),
        (["--set", "notify.secretEnv[0].name=bad-name"], "secretEnv"),
        (["--set", "notify.replica=2"], "replica"),
    ],
)
def test_bad_notify_values_fail_at_render(flags: list[str], message: str) -> None:
    rendered = render(CI, *flags)
    assert rendered.returncode != 0
    assert message in rendered.stderr, rendered.stderr


@pytest.mark.parametrize(
    ("config", "worst"),
    [
        # drain_s + the final commit's flush (5) + the one closing the consumer makes in
        # _on_revoke (5) + the producer's flush (10) + the join of the attempts under way
        # (request_timeout_s + 1): NotifyWorker._shutdown.
        ([], 41),
        (["--set", "config.notify.drain_s=20"], 51),
        (
            ["--set", "config.notify.drain_s=0", "--set", "config.notify.request_timeout_s=2.5"],
            23.5,
        ),
    ],
    ids=["defaults", "longer-drain", "fractions"],
)
def test_the_grace_period_covers_the_whole_shutdown(config: list[str], worst: float) -> None:
    def grace(seconds: int) -> subprocess.CompletedProcess[str]:
        flags = ["--set", "notify.enabled=true"]
        return render(
            None, *flags, *config, "--set", f"notify.terminationGracePeriodSeconds={seconds}"
        )

    short = grace(int(worst))
    assert short.returncode != 0
    assert f"({worst:g} s in all)" in short.stderr, short.stderr
    assert grace(int(worst) + 1).returncode == 0


def test_the_default_grace_period_is_long_enough() -> None:
    assert render(None, "--set", "notify.enabled=true").returncode == 0


def _panels() -> list[dict[str, Any]]:
    return json.loads((CHART / "files" / "dashboard.json").read_text())["panels"]  # type: ignore[no-any-return]


def test_the_dashboard_has_a_notify_row_showing_every_notify_metric() -> None:
    panels = _panels()
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "notify")
    row = []
    for panel in panels[start + 1 :]:
        if panel["type"] == "row":
            break
        row.append(panel)
    assert len(row) >= 4
    exprs = " ".join(t["expr"] for p in row for t in p["targets"])
    shown = set(re.findall(r"\bpixelfleet_notify_[a-z_]+\b", exprs))
    wanted = {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("pixelfleet_notify_")
        for suffix in SUFFIXES[family.type]
    }
    assert len(wanted) >= 8
    assert shown == wanted, shown ^ wanted
    # Per endpoint, and the latency from the histogram's buckets.
    assert all("by (endpoint" in t["expr"] for p in row for t in p["targets"])
    assert "histogram_quantile(0.95, sum by (endpoint, le)" in exprs


def _breaker(values: str, endpoint: str = "crm", instance: str = "n-0") -> dict[str, str]:
    name = f'pixelfleet_notify_breaker_state{{endpoint="{endpoint}",instance="{instance}"}}'
    return {"series": name, "values": values}


def _firing(endpoint: str) -> list[dict[str, Any]]:
    annotations = dict(alert_rules()[ALERT]["annotations"])
    annotations["summary"] = annotations["summary"].replace("{{ $labels.endpoint }}", endpoint)
    return [
        {
            "exp_labels": {"severity": "warning", "endpoint": endpoint},
            "exp_annotations": annotations,
        }
    ]


def _promtool(tmp_path: Path, series: list[dict[str, str]], expect: dict[str, Any]) -> None:
    """`expect`: the alerts expected at each evaluation time."""
    case = {
        "interval": "30s",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": at, "alertname": ALERT, "exp_alerts": alerts}
            for at, alerts in expect.items()
        ],
    }
    promtool_test(tmp_path, [case], interval="30s")


def test_the_breaker_alert_fires_while_probes_keep_failing(tmp_path: Path) -> None:
    # Open, with a half-open probe every minute that fails: open most of each minute.
    flapping = " ".join(["2 1"] * 30)
    healthy = "0x60"
    series = [_breaker(flapping), _breaker(healthy, "audit")]
    # Pending for the first five minutes, then firing for crm alone.
    _promtool(tmp_path, series, {"4m": [], "12m": _firing("crm")})


def test_the_breaker_alert_stays_quiet_for_a_short_outage(tmp_path: Path) -> None:
    # Open from 2 to 4 minutes, closed before and after: with the two-minute window the
    # expression holds until 6 minutes, under the five the alert waits.
    short = "0x3 2x4 0x53"
    _promtool(tmp_path, [_breaker(short)], {"5m": [], "6m30s": [], "12m": []})


def test_the_breaker_alert_resolves_once_the_endpoint_answers(tmp_path: Path) -> None:
    # Open for ten minutes, then closed: fires, then clears within the window.
    long = "2x20 0x40"
    _promtool(tmp_path, [_breaker(long)], {"9m": _firing("crm"), "14m": []})


def test_the_alert_waits_the_charts_minutes() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert alert_rules()[ALERT]["for"] == f"{values['prometheusRule']['notifyBreakerOpenMinutes']}m"
