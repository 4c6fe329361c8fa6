"""The `stages.fetch` section: what may be reached, how fast, and how long to wait."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class HostRule(BaseModel):
    """Politeness for the hosts a pattern matches (fnmatch, case-insensitive)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = "*"
    rate_per_s: float = Field(default=4.0, gt=0)  # requests per second, token bucket
    burst: int = Field(default=4, ge=1)  # tokens the bucket holds
    concurrency: int = Field(default=2, ge=1)  # downloads at once, per host


class FetchSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- what may be reached (netguard); everything internal is refused by default
    allowed_ports: tuple[int, ...] = (80, 443)
    # CIDRs admitted although internal: an internal CDN, or the tests' loopback servers.
    allow_networks: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()  # when set, only these host patterns
    deny_hosts: tuple[str, ...] = ()
    # -- one download (safe_http)
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)  # validate's own limit
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=15.0, gt=0)
    # The whole download, redirects and body. A download never outlives its batch (the
    # batch's deadline cuts it, see batch_budget_s), so None, the default, leaves the batch
    # in charge; a value may only shorten that, and one past batch_budget_s is refused as
    # a limit that could never apply.
    total_timeout_s: float | None = Field(default=None, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    user_agent: str = "pixelfleet-fetch/0.1"
    ca_file: str | None = None  # an extra CA bundle
    # -- the process and the hosts (politeness)
    concurrency: int = Field(default=32, ge=1)  # downloads in flight per process
    # Messages held at once, most of them waiting for their host's turn; more than
    # `concurrency` so that a slow or rate-limited host does not starve the others.
    pending: int = Field(default=128, ge=1)
    default_host: HostRule = Field(default_factory=HostRule)
    hosts: tuple[HostRule, ...] = ()  # the first matching pattern wins
    # -- failures
    max_attempts: int = Field(default=5, ge=1)
    # A host that sends nothing before the batch's deadline or the read timeout is left
    # alone this long; its other URLs are deferred without a request meanwhile.
    slow_host_pause_s: float = Field(default=30.0, ge=0)
    backoff_initial_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    # A fetch batch lasts at most this long: a download still running when the batch stops
    # starting work is cut and deferred (counted as an attempt), so one slow host costs the
    # others little. It also bounds every download: raise it for large images on slow links.
    batch_budget_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _total_fits_the_batch(self) -> Self:
        if self.total_timeout_s is not None and self.total_timeout_s > self.batch_budget_s:
            raise ValueError(
                f"total_timeout_s ({self.total_timeout_s:g} s) is longer than batch_budget_s "
                f"({self.batch_budget_s:g} s): a download is cut when its batch ends, so it "
                "could never run that long; raise batch_budget_s (and leave total_timeout_s "
                "unset) to let downloads take longer, or lower total_timeout_s"
            )
        return self

    def download_timeout_s(self) -> float:
        """The most one download may take: total_timeout_s, or the batch's budget."""
        return self.total_timeout_s or self.batch_budget_s
