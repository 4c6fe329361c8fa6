"""The SSRF guard of every outbound fetch (the URL-fetching stage, later webhook delivery).

Default-deny: an address inside our network is refused unless the policy's `allow_networks`
names it. The module is pure: it parses URLs and classifies addresses; it never resolves a
name. The HTTP client must therefore

- connect to `Target.host`/`Target.port` and send `Target.path` exactly as parsed here, never
  re-parse the URL with another parser (parsers disagree on odd URLs, and the disagreement is
  the attack);
- resolve `Target.host` once, pass every address to `vet`, and connect to an address `vet`
  returned, not to the name again (a second lookup may answer differently: DNS rebinding);
- send each redirect's `resolve_redirect(...)` through `check_url` again.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import quote, urljoin

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_DEFAULT_PORTS = {"http": 80, "https": 443}


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


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    host_header: str
    literal: Address | None


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
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def _text(address: Address) -> str:
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


def _classify_v6(address: ipaddress.IPv6Address) -> tuple[str, str] | None:
    for prefix, rule, kind, shift in _EMBEDDINGS:
        # :: and ::1 lie in ::/96 but are themselves, not IPv4-compatible addresses.
        if address in prefix and int(address) > 1:
            embedded = ipaddress.IPv4Address((int(address) >> shift) & 0xFFFFFFFF)
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


def _admitted(address: Address, policy: NetPolicy) -> bool:
    forms: tuple[Address, ...] = (address,)
    # A dual-stack socket reaches 127.0.0.1 through ::ffff:127.0.0.1: one destination, so
    # either spelling matches a network written in either family.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        forms = (address, address.ipv4_mapped)
    elif isinstance(address, ipaddress.IPv4Address):
        forms = (address, ipaddress.IPv6Address(f"::ffff:{address}"))
    # A metadata endpoint holds the cloud credentials: allowing 100.64.0.0/10 for a VPN must
    # not open Alibaba's 100.100.100.200 too. Only a network naming it alone does.
    metadata = any(form in _METADATA for form in forms)
    return any(
        form in network and (not metadata or network.num_addresses == 1)
        for form in forms
        for network in policy.allow_networks
    )


def check_address(address: Address, policy: NetPolicy) -> None:
    """Raise Refused unless `address` may be connected to under `policy`."""
    if _admitted(address, policy):
        return
    if isinstance(address, ipaddress.IPv4Address):
        verdict = _classify_v4(address)
    else:
        verdict = _classify_v6(address)
    if verdict is not None:
        rule, words = verdict
        raise Refused(rule, f"{_text(address)} is {words}")


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


_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):(.*)", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_AUTHORITY = re.compile(r"[^/?#]*")
_NAME = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_V6_CHARS = re.compile(r"[0-9a-f:.]+")
# What a URL calls "a number" as its last label (WHATWG); such a host must be an IPv4 address.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# One part of an inet_aton spelling: hex, octal (leading zero) or decimal.
_ATON_PART = re.compile(r"0x(?P<hex>[0-9a-f]*)|0(?P<oct>[0-7]+)|(?P<dec>0|[1-9][0-9]*)")
# RFC 3986 pchar and query characters; "%" stays so existing escapes are not doubled.
_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = _PATH_SAFE + "?"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _pattern(text: str) -> str:
    """A host pattern in the form hosts are compared in: lower-case, IDNA, no trailing dot."""
    labels = text.strip().lower().removesuffix(".").split(".")
    if any(not label.isascii() and any(c in label for c in "*?[") for label in labels):
        raise ValueError(f"host pattern {text!r}: a wildcard in a non-ASCII label")
    return ".".join(
        label if label.isascii() else label.encode("idna").decode("ascii") for label in labels
    )


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address C's inet_aton reads in `host` (127.1, 0x7f.1, 0177.0.0.1,
    2130706433), which is what a resolver would connect to; None if it reads none."""
    parts = host.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        match = _ATON_PART.fullmatch(part)
        if match is None:
            return None
        if match["hex"] is not None:
            values.append(int(match["hex"] or "0", 16))
        elif match["oct"] is not None:
            values.append(int(match["oct"], 8))
        else:
            values.append(int(match["dec"]))
    *head, last = values
    # The last part fills all the bytes the earlier parts left: 127.1 is 127.0.0.1.
    if any(value > 255 for value in head) or last >= 1 << (8 * (5 - len(parts))):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def _host_name(raw: str) -> tuple[str, ipaddress.IPv4Address | None]:
    """Normalize an unbracketed host: lower-case, IDNA, no trailing dot; and read an IPv4
    literal in any spelling."""
    host = raw.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise Refused("malformed", f"host {_short(raw)!r} is not a valid name: {exc}") from None
    # Checked after IDNA, since nameprep turns fullwidth look-alikes into "@", "." or digits.
    host = host.removesuffix(".")
    if host and (len(host) > 253 or not _NAME.fullmatch(host)):
        raise Refused("malformed", f"host {_short(raw)!r} is not a valid name")
    if host and _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        literal = _inet_aton(host)
        if literal is None:
            raise Refused("malformed", f"host {host} looks like an IPv4 address but is not one")
        return str(literal), literal
    return host, None


def _host_literal_v6(inside: str) -> ipaddress.IPv6Address:
    if "%" in inside:  # a zone picks an interface of this machine: never a remote destination
        raise Refused("ipv6_zone", f"[{_short(inside)}] carries an IPv6 zone id")
    try:
        if not _V6_CHARS.fullmatch(inside.lower()):
            raise ValueError(inside)
        return ipaddress.IPv6Address(inside)
    except ValueError:
        raise Refused("malformed", f"[{_short(inside)}] is not an IPv6 address") from None


def _authority(text: str, scheme: str) -> tuple[str, str]:
    """Split what follows "scheme:" into the authority and the rest (path, query, fragment)."""
    if not text.startswith("//"):
        raise Refused("no_host", f"a {scheme}: URL without '//' has no host")
    match = _AUTHORITY.match(text, 2)
    assert match is not None  # the pattern matches the empty string
    netloc, rest = match[0], text[match.end() :]
    if "@" in netloc:  # http://good.example@127.0.0.1/ goes to 127.0.0.1
        shown = f"{scheme}://***@{netloc.rpartition('@')[2]}{rest}"  # the secret stays out
        raise Refused("credentials", f"{_short(shown)} carries credentials")
    if "\\" in netloc:  # browsers read "\" as "/", other parsers as part of the host
        raise Refused("malformed", "a backslash in the host")
    return netloc, rest


def _host_port(netloc: str) -> tuple[str, Address | None, str | None]:
    """The normalized host, its IP literal if it is one, and the port text if given."""
    if not netloc.startswith("["):
        raw_host, colon, port_text = netloc.partition(":")
        return *_host_name(raw_host), port_text if colon else None
    inside, bracket, after = netloc[1:].partition("]")
    if not bracket or (after and not after.startswith(":")):
        raise Refused("malformed", f"{_short(netloc)!r} is not a bracketed IPv6 host")
    literal = _host_literal_v6(inside)
    return _text(literal), literal, after[1:] if after else None


def _port(scheme: str, port_text: str | None, policy: NetPolicy) -> int:
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
            raise Refused("malformed", f"port {_short(port_text)!r} is not a TCP port")
        port = int(port_text)
    elif scheme in _DEFAULT_PORTS:  # absent or empty ("http://host:/") means the default
        port = _DEFAULT_PORTS[scheme]
    else:
        raise Refused("port", f"scheme {scheme} has no default port; give one")
    if port not in policy.allowed_ports:
        allowed = ", ".join(str(p) for p in sorted(policy.allowed_ports))
        raise Refused("port", f"port {port} is not allowed (allowed: {allowed})")
    return port


def _check_host(host: str, literal: Address | None, policy: NetPolicy) -> None:
    for pattern in policy.deny_hosts:
        if fnmatch.fnmatchcase(host, pattern.lower().removesuffix(".")):
            raise Refused("host_denied", f"host {host} is denied ({pattern})")
    if policy.allow_hosts and not any(
        fnmatch.fnmatchcase(host, p.lower().removesuffix(".")) for p in policy.allow_hosts
    ):
        raise Refused("host_not_allowed", f"host {host} is not among the allowed hosts")
    if literal is not None:
        check_address(literal, policy)
    elif host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        # Refused before any lookup, unless the policy lets loopback in (then vet() judges
        # whatever the name resolves to, like any other name).
        loopbacks = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
        if not any(_admitted(address, policy) for address in loopbacks):
            raise Refused("loopback", f"{host} is loopback (a localhost name)")


def check_url(url: str, policy: NetPolicy) -> Target:
    """Parse `url` into the Target to connect to, or raise Refused. Resolves no name; an IP
    literal is checked with check_address right here."""
    text = url.strip(" \t\r\n")
    if _CONTROL.search(text):  # CR/LF in a path would split the request
        raise Refused("malformed", "the URL contains control characters")
    match = _SCHEME.fullmatch(text)
    if match is None:
        raise Refused("malformed", "the URL has no scheme")
    scheme = match[1].lower()
    if scheme not in {s.lower() for s in policy.allowed_schemes}:
        raise Refused("scheme", f"scheme {_short(scheme)} is not allowed")
    netloc, rest = _authority(match[2], scheme)
    host, literal, port_text = _host_port(netloc)
    if not host:
        raise Refused("no_host", f"{_short(text)} has no host")
    port = _port(scheme, port_text, policy)
    _check_host(host, literal, policy)

    path, _, query = rest.partition("#")[0].partition("?")  # the fragment stays client-side
    path = quote(path, safe=_PATH_SAFE) or "/"
    if query:
        path += "?" + quote(query, safe=_QUERY_SAFE)
    shown = f"[{host}]" if isinstance(literal, ipaddress.IPv6Address) else host
    host_header = shown if port == _DEFAULT_PORTS.get(scheme) else f"{shown}:{port}"
    return Target(scheme, host, port, path, host_header, literal)


def resolve_redirect(base: Target, location: str) -> str:
    """The absolute URL a Location header points to, relative to `base`; the client passes it
    to check_url again before following it."""
    return urljoin(f"{base.scheme}://{base.host_header}{base.path}", location.strip(" \t"))
