"""Per-host politeness for one fetch process: a token bucket and a concurrency cap per host,
a cap on the whole process, and pauses a host asked for (Retry-After).

A fetch waits for its host's turn only as long as its batch allows: past the deadline it
is told to come back later (HostBusyError) instead of holding the batch. Waiting happens on a
condition variable, so a host at its limit costs threads, not CPU.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from streams.stages.fetch.settings import HostRule

Clock = Callable[[], float]
# Host entries idle this long are forgotten: a crawl touches many hosts once.
IDLE_FORGET_S = 300.0
# Pruning runs once this many hosts are known.
PRUNE_AT = 10_000


class HostBusyError(Exception):
    """The host (or the process) has no room before the deadline; come back at `retry_at`."""

    def __init__(self, cause: str, host: str, retry_at: float) -> None:
        super().__init__(f"{host}: {cause}")
        self.cause = cause  # "rate", "concurrency", "retry_after", "process"
        self.host = host
        self.retry_at = retry_at  # on the gate's clock


@dataclass
class _Host:
    rule: HostRule
    tokens: float
    refilled: float
    in_flight: int = 0
    paused_until: float = 0.0
    last_used: float = 0.0


class HostGate:
    def __init__(
        self,
        default: HostRule,
        rules: tuple[HostRule, ...],
        process_slots: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self.default = default
        self.rules = rules
        self.process_slots = process_slots
        self.clock = clock
        self._busy = 0
        self._hosts: dict[str, _Host] = {}
        self._changed = threading.Condition()

    def rule_for(self, host: str) -> HostRule:
        lowered = host.lower()
        for rule in self.rules:
            if fnmatch.fnmatchcase(lowered, rule.pattern.lower()):
                return rule
        return self.default

    def rule_name(self, host: str) -> str:
        """The metric label of a host: its rule's pattern, never the host (unbounded)."""
        rule = self.rule_for(host)
        return "default" if rule is self.default else rule.pattern

    @contextmanager
    def turn(self, host: str, deadline: float) -> Iterator[None]:
        """Hold one of the host's slots and one of the process's while the body runs."""
        self._acquire(host, deadline)
        try:
            yield
        finally:
            self._release(host)

    @contextmanager
    def hop(self, host: str, deadline: float) -> Iterator[None]:
        """Hold one of a redirect target's slots (and a token) while the body runs: a fetch
        that another host's URL redirected here already holds a process slot, so a hop
        takes none (two per fetch could leave every slot waiting for a second one)."""
        self._acquire(host, deadline, process=False)
        try:
            yield
        finally:
            self._release(host, process=False)

    def pause(self, host: str, seconds: float) -> None:
        """The host asked us to wait (429/503 with Retry-After)."""
        with self._changed:
            entry = self._entry(host, self.clock())
            entry.paused_until = max(entry.paused_until, self.clock() + seconds)

    def _entry(self, host: str, now: float) -> _Host:
        entry = self._hosts.get(host)
        if entry is None:
            if len(self._hosts) >= PRUNE_AT:
                self._prune(now)
            rule = self.rule_for(host)
            entry = self._hosts[host] = _Host(rule, float(rule.burst), now, last_used=now)
        return entry

    def _prune(self, now: float) -> None:
        idle = [
            h
            for h, e in self._hosts.items()
            if e.in_flight == 0 and now - e.last_used > IDLE_FORGET_S and e.paused_until <= now
        ]
        for host in idle:
            del self._hosts[host]

    def _wait_for(self, entry: _Host, now: float, process: bool) -> tuple[str, float] | None:
        """Why this host cannot start now and when it might: None when it can."""
        entry.tokens = min(
            float(entry.rule.burst),
            entry.tokens + (now - entry.refilled) * entry.rule.rate_per_s,
        )
        entry.refilled = now
        if entry.paused_until > now:
            return "retry_after", entry.paused_until
        if entry.in_flight >= entry.rule.concurrency:
            return "concurrency", now + 1.0 / entry.rule.rate_per_s
        if entry.tokens < 1.0:
            return "rate", now + (1.0 - entry.tokens) / entry.rule.rate_per_s
        if process and self._busy >= self.process_slots:
            return "process", now + 0.05
        return None

    def _acquire(self, host: str, deadline: float, process: bool = True) -> None:
        with self._changed:
            while True:
                now = self.clock()
                entry = self._entry(host, now)
                blocked = self._wait_for(entry, now, process)
                if blocked is None:
                    entry.tokens -= 1.0
                    entry.in_flight += 1
                    entry.last_used = now
                    self._busy += process
                    return
                cause, ready_at = blocked
                if ready_at > deadline or now >= deadline:
                    raise HostBusyError(cause, host, ready_at)
                # Woken early by a release; a token's refill time otherwise.
                self._changed.wait(max(0.001, min(ready_at, deadline) - now))

    def _release(self, host: str, process: bool = True) -> None:
        with self._changed:
            entry = self._hosts.get(host)
            if entry is not None:
                entry.in_flight -= 1
                entry.last_used = self.clock()
            self._busy -= process
            self._changed.notify_all()
