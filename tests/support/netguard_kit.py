"""What the address-guard tests share: the policies they check against and a refusal catcher."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from streams.io.netguard import NetPolicy, Refused

DEFAULT = NetPolicy()
# Loopback let through on the usual ports, every other internal range still refused.
LOOPBACK_OK = NetPolicy(
    allowed_ports=frozenset({80, 443, 8080}),
    allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
)
V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def refusal(call: Callable[[], object]) -> Refused:
    """The Refused that `call` raises; the test fails if it raises none."""
    with pytest.raises(Refused) as info:
        call()
    return info.value
