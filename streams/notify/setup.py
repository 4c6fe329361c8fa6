"""What the notify worker and `pixelfleet webhooks redrive` share: the topic and group
names, and the HTTP client built from the notify settings (the SSRF rules, the limits)."""

from __future__ import annotations

from streams.config.settings import FleetSettings
from streams.config.topics import Topics
from streams.io.netguard import NetPolicy
from streams.io.safe_http import HttpLimits, SafeFetcher, system_resolver


def webhooks_dlq(prefix: str) -> str:
    return Topics(prefix).webhooks_dlq


def group(prefix: str) -> str:
    return f"{prefix}.notify"


class NotifySetupError(Exception):
    """The worker cannot start: a subscription's URL, secret or the network rules."""


def build_fetcher(settings: FleetSettings) -> SafeFetcher:
    notify = settings.notify
    try:
        policy = NetPolicy.from_settings(
            schemes=("http", "https"),
            ports=notify.allowed_ports,
            allow_networks=notify.allow_networks,
            allow_hosts=notify.allow_hosts,
            deny_hosts=notify.deny_hosts,
        )
    except ValueError as exc:
        raise NotifySetupError(f"notify: {exc}") from exc
    limits = HttpLimits(
        max_bytes=64 * 1024,  # only the answer's first bytes are ever read
        connect_timeout_s=notify.connect_timeout_s,
        read_timeout_s=notify.read_timeout_s,
        total_timeout_s=notify.request_timeout_s,
        max_redirects=0,
        user_agent=notify.user_agent,
        ca_file=notify.ca_file,
    )
    # Each endpoint's single delivery thread uses one connection at a time; the pools are
    # per host, so a host that several subscriptions share needs one for each of them, or
    # a slow endpoint would hold the connection a healthy one on that host waits for.
    endpoints = max(1, len(notify.subscriptions))
    return SafeFetcher(policy, limits, system_resolver, connections_per_host=endpoints)
