"""Paths, the offline tools and the chart renderer the deploy tests share."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "pixelfleet"
KUBE = "1.30.0"


def tool(name: str) -> str:
    """The path of a tool .ci/test-deps.sh installs; a missing one fails, never skips."""
    found = shutil.which(name)
    assert found, f"{name} is needed: run bash .ci/test-deps.sh (or make test), which installs it"
    return found


def alert_rules() -> dict[str, dict[str, Any]]:
    """deploy/prometheus/alerts.yml's rules (the chart's, rendered) by alert name."""
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def promtool(
    tmp_path: Path, rules: str, cases: list[dict[str, Any]], interval: str = "1m"
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of a rule file (its text) with these test cases."""
    (tmp_path / "rules.yml").write_text(rules)
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": interval, "tests": cases}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return subprocess.run(
        [tool("promtool"), "test", "rules", "test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )


def promtool_test(tmp_path: Path, cases: list[dict[str, Any]], interval: str = "1m") -> None:
    """The test cases against alerts.yml; a failed one fails the test with promtool's
    account of it."""
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    done = promtool(tmp_path, rules, cases, interval)
    assert done.returncode == 0, done.stdout + done.stderr


def render(
    values: Path | None, *extra: str, release: str = "t"
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart as release `t` (or `release`), with a values file and
    more flags."""
    args = [tool("helm"), "template", release, str(CHART), "--kube-version", KUBE]
    if values is not None:
        args += ["-f", str(values)]
    return subprocess.run([*args, *extra], capture_output=True, text=True, check=False)


def manifests(values: Path | None, *extra: str, release: str = "t") -> list[dict[str, Any]]:
    """The rendered documents; a render that fails fails the test."""
    rendered = render(values, *extra, release=release)
    assert rendered.returncode == 0, rendered.stderr
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one rendered document of this kind and name; none or two fail the test."""
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def main_container(workload: dict[str, Any]) -> dict[str, Any]:
    """A workload's only container."""
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In / NotIn expressions) against labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for rule in selector.get("matchExpressions", []):
        inside = labels.get(rule["key"]) in rule["values"]
        if inside != (rule["operator"] == "In"):
            return False
    return True
