"""The stage alerts, evaluated by promtool on made-up series: BatchesRetrying fires on a
stage that keeps retrying and finishes nothing (an S3 or Kafka outage), NoProgress also for
a stage that never finished a message (no pixelfleet_messages_total series at all), and
LagGrowing after as many minutes of steady growth as its summary says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.tools import CHART, alert_rules, promtool_test

RETRYING = "PixelfleetBatchesRetrying"
NO_PROGRESS = "PixelfleetNoProgress"
LAG = "PixelfleetLagGrowing"


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    pairs = ",".join(f'{k}="{v}"' for k, v in {"stage": "validate", **labels}.items())
    return {"series": f"{name}{{{pairs}}}", "values": values}


def _firing(alert: str, severity: str) -> list[dict[str, Any]]:
    rule = alert_rules()[alert]
    annotations = {
        key: text.replace("{{ $labels.stage }}", "validate")
        for key, text in rule["annotations"].items()
    }
    return [
        {"exp_labels": {"severity": severity, "stage": "validate"}, "exp_annotations": annotations}
    ]


def _case(series: list[dict[str, str]], alert: str, expect: dict[str, Any]) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": alerts}
            for at, alerts in expect.items()
        ],
    }


# The stage finished 10 messages a minute until minute 10, then S3 went away: from then on
# each batch is aborted and retried, and nothing finishes.
FINISHED_THEN_NOTHING = _series("pixelfleet_messages_total", "0+10x10 100x40", outcome="ok")
RETRIED_FROM_10 = _series("pixelfleet_batch_retries_total", "0x10 3+3x40", kind="s3")


def test_the_retry_alert_is_rendered_with_the_charts_minutes() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]
    rule = alert_rules()[RETRYING]
    assert rule["for"] == f"{values['batchRetryingMinutes']}m"
    total = 10 + values["batchRetryingMinutes"]
    assert f"no message finished for {total} minutes" in rule["annotations"]["summary"]
    assert rule["labels"] == {"severity": "critical"}


@pytest.mark.parametrize(
    ("alert", "series", "expect"),
    [
        # The last message at minute 10; the 10-minute rate is 0 from minute 20, and the
        # alert fires 5 minutes later: 15 minutes without a finished message, as it says.
        (
            RETRYING,
            [FINISHED_THEN_NOTHING, RETRIED_FROM_10],
            {"19m": [], "23m": [], "26m": _firing(RETRYING, "critical")},
        ),
        # A stage that never finished anything has no messages series at all; it counts as
        # no progress all the same.
        (
            RETRYING,
            [_series("pixelfleet_batch_retries_total", "0+3x30", kind="kafka")],
            {"4m": [], "10m": _firing(RETRYING, "critical")},
        ),
        # A retry now and then while messages keep finishing: healthy.
        (
            RETRYING,
            [
                _series("pixelfleet_messages_total", "0+10x50", outcome="ok"),
                _series("pixelfleet_batch_retries_total", "0+1x50", kind="s3"),
            ],
            {"30m": []},
        ),
        # Wedged since it started: lag and never a finished message, so no series of them.
        (
            NO_PROGRESS,
            [_series("pixelfleet_consumer_lag", "500x40", partition="0")],
            {"5m": [], "30m": _firing(NO_PROGRESS, "critical")},
        ),
        # Finished messages, then none: 20 minutes after the last one, as the summary says.
        (
            NO_PROGRESS,
            [_series("pixelfleet_consumer_lag", "500x50", partition="0"), FINISHED_THEN_NOTHING],
            {"28m": [], "31m": _firing(NO_PROGRESS, "critical")},
        ),
        # Messages wait but keep finishing.
        (
            NO_PROGRESS,
            [
                _series("pixelfleet_consumer_lag", "500x40", partition="0"),
                _series("pixelfleet_messages_total", "0+10x40", outcome="ok"),
            ],
            {"30m": []},
        ),
    ],
    ids=[
        "retrying-outage",
        "retrying-never-finished",
        "retrying-healthy",
        "no-progress-never-finished",
        "no-progress-stopped-finishing",
        "no-progress-working",
    ],
)
def test_stage_alerts_fire_only_without_progress(
    tmp_path: Path, alert: str, series: list[dict[str, str]], expect: dict[str, Any]
) -> None:
    promtool_test(tmp_path, [_case(series, alert, expect)])


def test_lag_growing_fires_after_the_minutes_its_summary_names(tmp_path: Path) -> None:
    """Steady at 100 for half an hour, then 10 more a minute from minute 31: the delta is
    positive from the first minute of growth, so it fires about 10 minutes later, not 20."""
    assert "has grown for 10 minutes" in alert_rules()[LAG]["annotations"]["summary"]
    lag = [_series("pixelfleet_consumer_lag", "100x30 110+10x30", partition="0")]
    expect = {"30m": [], "40m": [], "42m": _firing(LAG, "warning")}
    promtool_test(tmp_path, [_case(lag, LAG, expect)])
