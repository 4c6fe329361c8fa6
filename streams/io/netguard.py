"""The SSRF guard of every outbound request: the fetch stage's downloads and the notify
worker's webhook deliveries.

Default-deny: an address inside our network is refused unless the policy's `allow_networks`
names it. This module parses URLs; `streams.io.address_rules` holds the policy and judges
addresses (both are re-exported here, so callers import the guard from one place). Neither
resolves a name. The HTTP client must therefore

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
from dataclasses import dataclass
from urllib.parse import quote, urljoin

from streams.io.address_rules import (
    Address,
    NetPolicy,
    Network,
    Refused,
    address_text,
    admitted,
    check_address,
    vet,
)

__all__ = [
    "Address",
    "NetPolicy",
    "Network",
    "Refused",
    "Target",
    "check_address",
    "check_url",
    "resolve_redirect",
    "vet",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    host_header: str
    literal: Address | None


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
    return address_text(literal), literal, after[1:] if after else None


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
        if not any(admitted(address, policy) for address in loopbacks):
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
