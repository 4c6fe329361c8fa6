"""The `notify` section: who gets webhooks of which events, and how hard we try.

Subscriptions live in the config file. A secret may be written inline (a laptop, a test)
or named by `secret_env`, the environment variable that holds it (the Helm chart fills it
from a Kubernetes Secret), so the file itself can stay free of secrets.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

# The same three names as processors.webhooks.EventType (a unit test keeps them equal; the
# config layer imports nothing above itself).
WebhookEventType = Literal["done", "rejected", "duplicate"]
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class _Group(BaseModel):
    # As settings.SettingsGroup (which settings.py, importing this module, cannot lend us):
    # immutable, and a misspelt key is an error.
    model_config = ConfigDict(frozen=True, extra="forbid")


class WebhookSubscription(_Group):
    # A short name: the `endpoint` label of the metrics and the name in logs and dead
    # letters (never the URL, which may carry a token).
    name: str
    url: str
    secret: SecretStr | None = None
    secret_env: str | None = None  # the environment variable holding the secret
    events: tuple[WebhookEventType, ...] = ("done", "rejected", "duplicate")
    # Only events of these categories (empty: all). A rejected image that never reached
    # categorize has no category and passes no filter.
    categories: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> WebhookSubscription:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r}: 1-63 of a-z 0-9 _ -, starting alphanumeric")
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError(f"subscription {self.name}: give exactly one of secret, secret_env")
        if not self.events:
            raise ValueError(f"subscription {self.name}: events is empty")
        return self

    def secret_bytes(self) -> bytes:
        """The signing key; an empty one (inline, or a `secret_env` unset or empty) is an
        error at start-up, which says which of the two to mend."""
        if self.secret is not None:
            value = self.secret.get_secret_value()
            if not value:
                raise ValueError(
                    f"subscription {self.name}: secret is empty; give the signing key, "
                    "or name the variable that holds it with secret_env"
                )
            return value.encode()
        variable = self.secret_env or ""
        value = os.environ.get(variable, "")
        if not value:
            raise ValueError(
                f"subscription {self.name}: the variable {variable} (its secret_env) is "
                f"unset or empty; set {variable} to the signing key"
            )
        return value.encode()


class NotifySettings(_Group):
    """The `pixelfleet notify` worker: subscriptions, what may be reached, retries, breaker."""

    subscriptions: tuple[WebhookSubscription, ...] = ()
    # -- what may be reached: the same SSRF rules as the fetch stage (streams/io/netguard)
    allowed_ports: tuple[int, ...] = (80, 443)
    # CIDRs admitted although internal: a receiver inside the cluster, or the tests' loopback.
    allow_networks: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    ca_file: str | None = None  # an extra CA bundle for receivers with a private CA
    # -- one attempt
    connect_timeout_s: float = Field(default=3.0, gt=0)
    read_timeout_s: float = Field(default=5.0, gt=0)  # waiting for the status line
    request_timeout_s: float = Field(default=10.0, gt=0)  # the whole attempt
    user_agent: str = "pixelfleet-notify/0.1"
    # -- retries of one event at one endpoint
    max_attempts: int = Field(default=8, ge=1)
    # How long one endpoint may keep retrying one event, counted from its first attempt,
    # breaker cool-downs included; then it goes to <prefix>.webhooks.dlq with the last
    # status. While the endpoint keeps failing it counts from when the failing began (or
    # the event was queued, if later), so a dead endpoint's queue drains
    # (streams/notify/delivery.py).
    retry_budget_s: float = Field(default=600.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    retry_after_max_s: float = Field(default=300.0, ge=0)  # a longer Retry-After is cut
    # -- the circuit breaker of each endpoint
    breaker_failures: int = Field(default=5, ge=1)  # failed attempts in a row that open it
    breaker_reset_s: float = Field(default=30.0, gt=0)  # cool-down before a half-open probe
    # -- the consumer
    # Events one endpoint may hold; past it, its new events go to the webhook DLQ at once,
    # so a dead endpoint costs memory up to here and never holds the others back.
    max_pending: int = Field(default=1000, ge=1)
    # Partitions are paused while this many events are in hand (all endpoints together);
    # the consumer keeps polling, so the group never sees it stall.
    max_in_flight: int = Field(default=5000, ge=1)
    commit_interval_s: float = Field(default=1.0, gt=0)
    # Events in hand when a stop is asked for get this long to finish; the rest are read
    # again by the next owner of their partition (at least once).
    drain_s: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _unique_names(self) -> NotifySettings:
        names = [s.name for s in self.subscriptions]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"subscription names must be unique: {', '.join(doubled)}")
        return self
