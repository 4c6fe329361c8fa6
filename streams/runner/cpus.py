"""How many CPUs this process may really use: the affinity mask and the cgroup's quota.

`os.cpu_count()` is the node's count. In a pod that asks for 2 CPUs on a 64-core node it
says 64, and a pool of 64 processes (each allowed its own memory limit) then shares two
CPUs' time and the pod's memory: the pool is sized by this instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """CPUs the cgroup's quota allows (v2 `cpu.max`, else v1's CFS files); None when unset."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may use, at least 1: a fractional quota rounds up (1.5 CPUs keep
    two processes busy part of the time, which is what the quota sells)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not every platform has affinity
        count = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)
