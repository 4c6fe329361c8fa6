"""The pool's default size follows the container's CPU quota, not the node's core count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.runner import cpus, executor


def _v2(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def _v1(root: Path, quota: int, period: int) -> Path:
    folder = root / "cpu"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_a_v2_quota_is_cpus_and_max_is_none(tmp_path: Path) -> None:
    assert cpus.cgroup_quota(_v2(tmp_path / "a", "150000 100000\n")) == 1.5
    assert cpus.cgroup_quota(_v2(tmp_path / "b", "max 100000\n")) is None
    assert cpus.cgroup_quota(_v2(tmp_path / "c", "garbage\n")) is None


def test_a_v1_quota_and_its_unset_value(tmp_path: Path) -> None:
    assert cpus.cgroup_quota(_v1(tmp_path / "a", 200_000, 100_000)) == 2.0
    assert cpus.cgroup_quota(_v1(tmp_path / "b", -1, 100_000)) is None
    assert cpus.cgroup_quota(tmp_path / "none") is None


def test_the_pool_is_the_smaller_of_affinity_and_quota_rounded_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)))
    assert cpus.usable_cpus(_v2(tmp_path / "half", "50000 100000")) == 1
    assert cpus.usable_cpus(_v2(tmp_path / "two", "150000 100000")) == 2
    assert cpus.usable_cpus(_v2(tmp_path / "unset", "max 100000")) == 64
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {3})
    assert cpus.usable_cpus(_v2(tmp_path / "many", "800000 100000")) == 1


def test_a_configured_pool_size_wins_over_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "usable_cpus", lambda: 5)
    assert (executor.default_processes(0), executor.default_processes(3)) == (5, 3)
