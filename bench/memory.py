"""Memory of bench processes from /proc (Linux): one process's peak, a process tree's."""

from __future__ import annotations

import threading
from pathlib import Path


def status_mb(process: int, field: str) -> float:
    """A memory field of /proc/PID/status (VmRSS:, VmHWM:) in MB; 0 for a process gone."""
    try:
        status = Path(f"/proc/{process}/status").read_text()
    except OSError:
        return 0.0
    line = next((x for x in status.splitlines() if x.startswith(field)), f"{field} 0 kB")
    return int(line.split()[1]) / 1024


def family_of(pid: int) -> set[int]:
    """The process and every descendant (a forkserver pool hangs below its server)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return family


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(the process's peak RSS, its descendants' peaks added up) in MB, from /proc (Linux).
    The sum overstates the tree's peak when the descendants peaked at different times."""
    children = sum(status_mb(member, "VmHWM:") for member in family_of(pid) - {pid})
    return status_mb(pid, "VmHWM:"), children


class TreeRss:
    """The largest RSS of each worker's whole process tree at one moment, sampled every
    SAMPLE_S on a thread: the memory a worker's pod needs at once."""

    SAMPLE_S = 0.25

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.SAMPLE_S):
            for pid in self.pids:
                total = sum(status_mb(member, "VmRSS:") for member in family_of(pid))
                self.peak[pid] = max(self.peak[pid], total)

    def stop(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join()
        return self.peak
