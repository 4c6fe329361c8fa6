"""What the fetch calls of one process share, and the host a URL counts under."""

from __future__ import annotations

from dataclasses import dataclass, field

from minio import Minio

from streams.io.netguard import NetPolicy, Refused, check_url
from streams.io.safe_http import SafeFetcher
from streams.stages.fetch.fairness import Openings
from streams.stages.fetch.lull import Lull
from streams.stages.fetch.politeness import HostGate
from streams.stages.fetch.settings import FetchSettings

STAGE = "fetch"


@dataclass
class FetchRuntime:
    """What the fetch calls of one process share: clients, the host gate, the settings."""

    settings: FetchSettings
    fetcher: SafeFetcher
    gate: HostGate
    s3: Minio
    lull: Lull = field(default_factory=Lull)
    openings: Openings = field(default_factory=Openings)


def gate_host(url: str, policy: NetPolicy) -> str:
    """The host the politeness gate counts a URL under: netguard's reading of it (lower
    case, IDNA, no trailing dot, an address in its one spelling), so `EXAMPLE.com.`,
    `bücher.de` and `xn--bcher-kva.de` queue as the one host they are. A URL the guard
    refuses is "": the fetcher refuses it without a request; it needs no turn of any host."""
    try:
        return check_url(url, policy).host
    except Refused:
        return ""
