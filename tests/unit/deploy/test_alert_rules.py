"""The fetch stage's alerts, evaluated by promtool on made-up series: they fire on the share
of finished URLs (deferred ones come round again and are not counted), only after 15
minutes, and each on its own outcomes. alerts.yml is the chart's PrometheusRule rendered
(test_compose keeps it fresh)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.tools import DEPLOY, alert_rules, promtool_test

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
REFUSALS = "PixelfleetFetchRefusalsRising"
FAILURES = "PixelfleetFetchFailureRate"


def _series(**per_minute: int) -> list[dict[str, str]]:
    """Counters of pixelfleet_fetch_total growing by so many fetches a minute, per outcome."""
    return [
        {
            "series": f'pixelfleet_fetch_total{{stage="fetch",outcome="{outcome}",reason="x"}}',
            "values": f"0+{count}x40",
        }
        for outcome, count in per_minute.items()
    ]


def _firing(alert: str, share: str) -> list[dict[str, Any]]:
    annotations = dict(alert_rules()[alert]["annotations"])
    annotations["summary"] = (
        annotations["summary"]
        .replace("{{ $labels.stage }}", "fetch")
        .replace("{{ $value | humanizePercentage }}", share)
    )
    return [
        {"exp_labels": {"severity": "warning", "stage": "fetch"}, "exp_annotations": annotations}
    ]


def _case(series: list[dict[str, str]], refusals: list[Any], failures: list[Any]) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            # Pending, not firing, before 15 minutes.
            {"eval_time": "10m", "alertname": REFUSALS, "exp_alerts": []},
            {"eval_time": "10m", "alertname": FAILURES, "exp_alerts": []},
            {"eval_time": "25m", "alertname": REFUSALS, "exp_alerts": refusals},
            {"eval_time": "25m", "alertname": FAILURES, "exp_alerts": failures},
        ],
    }


def test_the_fetch_alerts_are_rendered_with_the_charts_thresholds() -> None:
    rules = alert_rules()
    assert rules[REFUSALS]["for"] == rules[FAILURES]["for"] == "15m"
    values = yaml.safe_load((DEPLOY / "helm" / "pixelfleet" / "values.yaml").read_text())
    thresholds = values["prometheusRule"]
    assert rules[REFUSALS]["expr"].rstrip().endswith(f"> {thresholds['fetchRefusedRatio']}")
    assert rules[FAILURES]["expr"].rstrip().endswith(f"> {thresholds['fetchFailureRatio']}")


@pytest.mark.parametrize(
    "case",
    [
        # 1 refused in 11 finished (9%, over 5%); the 100 deferred a minute would dilute it
        # under the threshold if they counted.
        _case(_series(ok=10, refused=1, deferred=100), _firing(REFUSALS, "9.091%"), []),
        # 3 failed and 1 rejected in 10 finished (40%, over 20%); no refusal.
        _case(_series(ok=6, failed=3, rejected=1, deferred=50), [], _firing(FAILURES, "40%")),
        # A healthy crawl: a few failures and refusals under both thresholds.
        _case(_series(ok=100, failed=5, rejected=5, refused=2, deferred=300), [], []),
    ],
    ids=["refusals", "failures", "healthy"],
)
def test_fetch_alerts_fire_on_the_share_of_finished_urls(
    tmp_path: Path, case: dict[str, Any]
) -> None:
    promtool_test(tmp_path, [case])
