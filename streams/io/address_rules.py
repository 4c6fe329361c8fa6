"""What the SSRF guard (`streams.io.netguard`) knows about addresses: the policy, the ranges
that are refused and why, and the check of every address a name resolved to.

Pure: it classifies addresses and never resolves a name. The fetch stage's downloads and the
notify worker's webhook deliveries are both judged by these rules, through `SafeFetcher`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NetPolicy:
    allowed_schemes: frozenset[str] = frozenset({"http", "https"})
    allowed_ports: frozenset[int] = frozenset({80, 443})
    # CIDRs admitted although they are internal (how tests reach loopback servers, how an
    # operator fetches from an internal CDN). Empty by default.
    allow_networks: tuple[Network, ...] = ()
    # Host patterns (fnmatch-style, case-insensitive, e.g. "*.example.com", "cdn.shop.test"):
    # when allow_hosts is non-empty, only matching hosts are fetched; deny_hosts always refuses.
    allow_hosts: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = ()

    @classmethod
    def from_settings(
        cls,
        *,
        schemes: Iterable[str],
        ports: Iterable[int],
        allow_networks: Iterable[str],
        allow_hosts: Iterable[str],
        deny_hosts: Iterable[str],
    ) -> NetPolicy:
        networks: list[Network] = []
        for raw in allow_networks:
            text = raw.strip()
            if not text:  # settings split from "a,,b" or a trailing comma
                continue
            try:
                # strict: "10.1.2.3/16" is more likely a typo than a wish for 10.1.0.0/16.
                networks.append(ipaddress.ip_network(text))
            except ValueError as exc:
                raise ValueError(f"allow_networks: {text!r} is not a CIDR network: {exc}") from exc
        port_set = frozenset(int(port) for port in ports)
        for port in sorted(port_set):
            if not 0 < port < 65536:
                raise ValueError(f"ports: {port} is not a TCP port")
        return cls(
            allowed_schemes=frozenset(s.strip().lower() for s in schemes if s.strip()),
            allowed_ports=port_set,
            allow_networks=tuple(networks),
            allow_hosts=tuple(_pattern(p) for p in allow_hosts if p.strip()),
            deny_hosts=tuple(_pattern(p) for p in deny_hosts if p.strip()),
        )


class Refused(Exception):  # noqa: N818 (the name is the API's)
    """A destination the policy refuses. `rule` is a short machine name; str(exc) reads
    like 'ssrf: 169.254.169.254 is link-local (cloud metadata)' (`reason` is the text after
    'ssrf: ')."""

    rule: str
    reason: str

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"ssrf: {reason}")
        self.rule = rule
        self.reason = reason

    # Exceptions pickle through their args; ours has two constructor arguments, not one.
    def __reduce__(self) -> tuple[type[Refused], tuple[str, str]]:
        return (type(self), (self.rule, self.reason))


def _rules(*rows: tuple[str, str, str]) -> tuple[tuple[Network, str, str], ...]:
    return tuple((ipaddress.ip_network(cidr), rule, words) for cidr, rule, words in rows)


# Checked in order: single addresses before the ranges holding them, so 169.254.169.254 is
# reported as metadata rather than as plain link-local.
_V4_RULES = _rules(
    ("255.255.255.255/32", "broadcast", "the limited broadcast address"),
    ("169.254.169.254/32", "metadata", "link-local (cloud metadata)"),
    ("169.254.170.2/32", "metadata", "link-local (cloud metadata, AWS ECS)"),
    ("192.0.0.192/32", "metadata", "reserved (cloud metadata, Oracle)"),
    ("100.100.100.200/32", "metadata", "shared address space (cloud metadata, Alibaba)"),
    # A public address, but inside Azure it is the host's wire server, which hands out
    # configuration to whoever on the VM asks.
    ("168.63.129.16/32", "metadata", "Azure's wire server (cloud metadata)"),
    ("0.0.0.0/8", "unspecified", 'unspecified ("this network")'),
    ("127.0.0.0/8", "loopback", "loopback"),
    ("10.0.0.0/8", "private", "private"),
    ("172.16.0.0/12", "private", "private"),
    ("192.168.0.0/16", "private", "private"),
    ("100.64.0.0/10", "cgnat", "shared address space (carrier-grade NAT)"),
    ("169.254.0.0/16", "link_local", "link-local"),
    ("192.0.0.0/24", "reserved", "reserved (IETF protocol assignments)"),
    ("192.0.2.0/24", "documentation", "reserved for documentation"),
    ("198.51.100.0/24", "documentation", "reserved for documentation"),
    ("203.0.113.0/24", "documentation", "reserved for documentation"),
    ("198.18.0.0/15", "benchmarking", "reserved for benchmarking"),
    ("192.88.99.0/24", "reserved", "reserved (6to4 relay anycast)"),
    ("224.0.0.0/4", "multicast", "multicast"),
    ("240.0.0.0/4", "reserved", "reserved (former class E)"),
)
_V6_RULES = _rules(
    ("::/128", "unspecified", "unspecified"),
    ("::1/128", "loopback", "loopback"),
    ("fd00:ec2::254/128", "metadata", "unique-local (cloud metadata, AWS)"),
    # The translator behind a local-use prefix is ours, and the embedding length is not fixed,
    # so the IPv4 address it reaches cannot even be read back: refuse it whole.
    ("64:ff9b:1::/48", "nat64", "in the local-use NAT64 prefix 64:ff9b:1::/48"),
    ("2001:db8::/32", "documentation", "reserved for documentation"),
    ("3fff::/20", "documentation", "reserved for documentation (RFC 9637)"),
    ("2001:2::/48", "benchmarking", "reserved for benchmarking"),
    ("2001:10::/28", "reserved", "reserved (ORCHID)"),
    ("2001:20::/28", "reserved", "reserved (ORCHIDv2)"),
    ("2001::/32", "reserved", "reserved (Teredo, whose embedded client address is obfuscated)"),
    ("100::/64", "reserved", "reserved (discard-only)"),
    ("fc00::/7", "unique_local", "unique-local"),
    ("fe80::/10", "link_local", "link-local"),
    ("fec0::/10", "site_local", "site-local (deprecated)"),
    ("ff00::/8", "multicast", "multicast"),
)
# IPv6 forms that carry an IPv4 address: (prefix, rule, words, bit shift of the IPv4 inside).
_EMBEDDINGS = tuple(
    (ipaddress.IPv6Network(cidr), rule, words, shift)
    for cidr, rule, words, shift in (
        ("::ffff:0:0/96", "ipv4_mapped", "an IPv4-mapped address", 0),
        ("::/96", "ipv4_compatible", "an IPv4-compatible address", 0),
        ("64:ff9b::/96", "nat64", "a NAT64 address", 0),
        ("2002::/16", "6to4", "a 6to4 address", 80),
    )
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_METADATA: frozenset[Address] = frozenset(
    net.network_address for net, rule, _ in _V4_RULES + _V6_RULES if rule == "metadata"
)


def address_text(address: Address) -> str:
    # Python < 3.13 prints ::ffff:127.0.0.1 as ::ffff:7f00:1, which hides what it is.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _classify_v4(address: ipaddress.IPv4Address) -> tuple[str, str] | None:
    for network, rule, words in _V4_RULES:
        if address in network:
            return rule, words
    if not address.is_global:  # whatever range the table above does not name
        return "not_global", "not globally reachable"
    return None


def _embedding(
    address: ipaddress.IPv6Address,
) -> tuple[str, str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 form carries, with the form's rule and name."""
    for prefix, rule, kind, shift in _EMBEDDINGS:
        # :: and ::1 lie in ::/96 but are themselves, not IPv4-compatible addresses.
        if address in prefix and int(address) > 1:
            return rule, kind, ipaddress.IPv4Address((int(address) >> shift) & 0xFFFFFFFF)
    return None


def _classify_v6(address: ipaddress.IPv6Address) -> tuple[str, str] | None:
    carried = _embedding(address)
    if carried is not None:
        rule, kind, embedded = carried
        verdict = _classify_v4(embedded)
        if verdict is not None:
            return rule, f"{kind} of {embedded}, which is {verdict[1]}"
        if rule == "ipv4_compatible":  # deprecated since 2006; nothing routes it
            return "reserved", f"{kind} of {embedded} (a deprecated form)"
        return None  # the same global IPv4 destination, reached another way
    for network, rule, words in _V6_RULES:
        if address in network:
            return rule, words
    if address not in _V6_GLOBAL_UNICAST:  # unassigned space; no route leads there
        return "not_global", "outside the global unicast space 2000::/3"
    if not address.is_global:
        return "not_global", "not globally reachable"
    return None


def admitted(address: Address, policy: NetPolicy) -> bool:
    forms: tuple[Address, ...] = (address,)
    # A dual-stack socket reaches 127.0.0.1 through ::ffff:127.0.0.1: one destination, so
    # either spelling matches a network written in either family.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        forms = (address, address.ipv4_mapped)
    elif isinstance(address, ipaddress.IPv4Address):
        forms = (address, ipaddress.IPv6Address(f"::ffff:{address}"))
    # A metadata endpoint holds the cloud credentials: allowing 100.64.0.0/10 for a VPN must
    # not open Alibaba's 100.100.100.200 too. Only a network naming it alone does.
    # Nor may a NAT64 or 6to4 prefix allowed whole reach one through the IPv4 it carries.
    carried = _embedding(address) if isinstance(address, ipaddress.IPv6Address) else None
    metadata = any(form in _METADATA for form in forms) or (
        carried is not None and carried[2] in _METADATA
    )
    return any(
        form in network and (not metadata or network.num_addresses == 1)
        for form in forms
        for network in policy.allow_networks
    )


def check_address(address: Address, policy: NetPolicy) -> None:
    """Raise Refused unless `address` may be connected to under `policy`."""
    if admitted(address, policy):
        return
    if isinstance(address, ipaddress.IPv4Address):
        verdict = _classify_v4(address)
    else:
        verdict = _classify_v6(address)
    if verdict is not None:
        rule, words = verdict
        raise Refused(rule, f"{address_text(address)} is {words}")


def vet(host: str, addresses: Iterable[str], policy: NetPolicy) -> list[Address]:
    """Check every address `host` resolved to; one bad address refuses the name (an attacker
    controls which one a client picks). Returns them parsed, in order, without duplicates."""
    unique: dict[Address, None] = {}
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise Refused("malformed", f"{host} resolved to {text!r}, not an address") from None
        try:
            check_address(address, policy)
        except Refused as exc:
            raise Refused(exc.rule, f"{exc.reason} ({host} resolved to it)") from None
        unique[address] = None
    if not unique:
        raise Refused("no_address", f"{host} resolved to no address")
    return list(unique)


def _pattern(text: str) -> str:
    """A host pattern in the form hosts are compared in: lower-case, IDNA, no trailing dot."""
    labels = text.strip().lower().removesuffix(".").split(".")
    if any(not label.isascii() and any(c in label for c in "*?[") for label in labels):
        raise ValueError(f"host pattern {text!r}: a wildcard in a non-ASCII label")
    return ".".join(
        label if label.isascii() else label.encode("idna").decode("ascii") for label in labels
    )
