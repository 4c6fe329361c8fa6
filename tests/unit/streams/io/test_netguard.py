"""The address guard's rules one address or URL at a time: every refused range, the
messages, and what an accepted URL parses to. Policies beyond the default are in
test_netguard_policy.py."""

from __future__ import annotations

import ipaddress
import pickle

import pytest

from streams.io.netguard import (
    NetPolicy,
    Refused,
    Target,
    check_address,
    check_url,
)
from tests.support.netguard_kit import DEFAULT, LOOPBACK_OK, V4, V6, refusal

ANY_PORT = NetPolicy(allowed_ports=frozenset({22, 80, 443, 8080}))


# (address, the rule that refuses it, or None when it passes)
ADDRESSES: list[tuple[str, str | None]] = [
    # IPv4, every named range
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.254", "cgnat"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.0.1", "link_local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("192.0.0.1", "reserved"),
    ("192.0.0.192", "metadata"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.88.99.1", "reserved"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "metadata"),
    # IPv4, global
    ("93.184.215.14", None),
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("172.32.0.1", None),
    ("100.63.255.255", None),
    ("100.128.0.1", None),
    # IPv6, every named range
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("64:ff9b:1::1", "nat64"),
    ("2001::1", "reserved"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"),
    ("fc00::1", "unique_local"),
    ("fd12:3456::1", "unique_local"),
    ("fd00:ec2::254", "metadata"),
    ("fe80::1", "link_local"),
    ("febf::1", "link_local"),
    ("fec0::1", "site_local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("100::1", "reserved"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("2001:10::1", "reserved"),
    ("2001:20::1", "reserved"),
    ("2001:100::1", "not_global"),
    ("4000::1", "not_global"),
    # IPv6 spellings of IPv4 addresses: refused by the form, naming the embedded address
    ("::ffff:127.0.0.1", "ipv4_mapped"),
    ("::ffff:10.0.0.1", "ipv4_mapped"),
    ("::ffff:169.254.1.1", "ipv4_mapped"),
    ("::ffff:169.254.169.254", "ipv4_mapped"),
    ("::127.0.0.1", "ipv4_compatible"),
    ("::10.0.0.1", "ipv4_compatible"),
    ("::169.254.1.1", "ipv4_compatible"),
    ("::169.254.169.254", "ipv4_compatible"),
    ("64:ff9b::127.0.0.1", "nat64"),
    ("64:ff9b::192.168.0.1", "nat64"),
    ("64:ff9b::169.254.1.1", "nat64"),
    ("64:ff9b::169.254.169.254", "nat64"),
    ("2002:7f00:1::", "6to4"),
    ("2002:c0a8:101::1", "6to4"),
    ("2002:a9fe:101::1", "6to4"),
    ("2002:a9fe:a9fe::1", "6to4"),
    # ... and of a global one: passes, except the deprecated IPv4-compatible form
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::8.8.8.8", None),
    ("2002:808:808::1", None),
    ("::8.8.8.8", "reserved"),
    # IPv6, global
    ("2606:4700::1111", None),
    ("2001:4860:4860::8888", None),
    ("2a00:1450:4001::1", None),
]


@pytest.mark.parametrize(("text", "rule"), ADDRESSES)
def test_check_address_rule(text: str, rule: str | None) -> None:
    address = ipaddress.ip_address(text)
    if rule is None:
        check_address(address, DEFAULT)
    else:
        assert refusal(lambda: check_address(address, DEFAULT)).rule == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("169.254.169.254", "ssrf: 169.254.169.254 is link-local (cloud metadata)"),
        ("127.0.0.2", "ssrf: 127.0.0.2 is loopback"),
        (
            "::ffff:127.0.0.1",
            "ssrf: ::ffff:127.0.0.1 is an IPv4-mapped address of 127.0.0.1, which is loopback",
        ),
        (
            "64:ff9b::a9fe:a9fe",
            "ssrf: 64:ff9b::a9fe:a9fe is a NAT64 address of 169.254.169.254, "
            "which is link-local (cloud metadata)",
        ),
        (
            "2002:c0a8:101::",
            "ssrf: 2002:c0a8:101:: is a 6to4 address of 192.168.1.1, which is private",
        ),
    ],
)
def test_check_address_message(text: str, message: str) -> None:
    exc = refusal(lambda: check_address(ipaddress.ip_address(text), DEFAULT))
    assert str(exc) == message
    assert exc.reason == message.removeprefix("ssrf: ")


def test_refused_pickles_with_rule_and_reason() -> None:
    exc = pickle.loads(pickle.dumps(Refused("loopback", "127.0.0.1 is loopback")))
    assert (exc.rule, exc.reason) == ("loopback", "127.0.0.1 is loopback")
    assert str(exc) == "ssrf: 127.0.0.1 is loopback"


# (url, policy, rule)
REFUSED_URLS: list[tuple[str, NetPolicy, str]] = [
    ("ftp://example.com/", DEFAULT, "scheme"),
    ("file:///etc/passwd", DEFAULT, "scheme"),
    ("gopher://127.0.0.1:70/", DEFAULT, "scheme"),
    ("javascript:alert(1)", DEFAULT, "scheme"),
    ("example.com/path", DEFAULT, "malformed"),
    ("http://example.com:22/", DEFAULT, "port"),
    ("https://example.com:8443/", DEFAULT, "port"),
    ("http://example.com:99999/", DEFAULT, "malformed"),
    ("http://example.com:8o/", DEFAULT, "malformed"),
    ("http://example.com:\uff18\uff10/", DEFAULT, "malformed"),
    ("http://example.com/", NetPolicy(allowed_ports=frozenset({443})), "port"),
    ("http://good.example@127.0.0.1/", DEFAULT, "credentials"),
    ("http://user:secret@example.com/", DEFAULT, "credentials"),
    ("http://:@example.com/", DEFAULT, "credentials"),
    ("http://@example.com/", DEFAULT, "credentials"),
    ("http://example.com\\@127.0.0.1/", DEFAULT, "credentials"),
    ("http://127.0.0.1\\.example.com/", DEFAULT, "malformed"),
    ("http:///path", DEFAULT, "no_host"),
    ("http://:80/", DEFAULT, "no_host"),
    ("http://./", DEFAULT, "no_host"),
    ("http:example.com", DEFAULT, "no_host"),
    ("http://0.0.0.0/", DEFAULT, "unspecified"),
    ("http://0.0.0.0:8080/", ANY_PORT, "unspecified"),
    ("http://0/", DEFAULT, "unspecified"),
    ("http://[::]/", DEFAULT, "unspecified"),
    ("http://[::1]/", DEFAULT, "loopback"),
    ("http://[::ffff:127.0.0.1]/", DEFAULT, "ipv4_mapped"),
    ("http://[::ffff:7f00:1]/", DEFAULT, "ipv4_mapped"),
    ("http://[64:ff9b::a9fe:a9fe]/", DEFAULT, "nat64"),
    ("http://[fe80::1%25eth0]/", DEFAULT, "ipv6_zone"),
    ("http://[fe80::1%eth0]/", DEFAULT, "ipv6_zone"),
    ("http://[::1/", DEFAULT, "malformed"),
    ("http://[::1]x/", DEFAULT, "malformed"),
    ("http://[127.0.0.1]/", DEFAULT, "malformed"),
    ("http://[v1.abc]/", DEFAULT, "malformed"),
    ("http://::1/", DEFAULT, "no_host"),  # unbracketed: host "" and a bad port
    # IPv4 in every spelling inet_aton reads
    ("http://127.0.0.1/", DEFAULT, "loopback"),
    ("http://2130706433/", DEFAULT, "loopback"),
    ("http://0177.0.0.1/", DEFAULT, "loopback"),
    ("http://0x7f000001/", DEFAULT, "loopback"),
    ("http://0x7f.1/", DEFAULT, "loopback"),
    ("http://0X7F.0.0.1/", DEFAULT, "loopback"),
    ("http://127.1/", DEFAULT, "loopback"),
    ("http://127.0.1/", DEFAULT, "loopback"),
    ("http://127.0.0.1./", DEFAULT, "loopback"),
    ("http://012.1.2.3/", DEFAULT, "private"),
    ("http://3232235777/", DEFAULT, "private"),
    ("http://0xa9fea9fe/", DEFAULT, "metadata"),
    ("http://169.254.169.254/latest/meta-data/", DEFAULT, "metadata"),
    ("http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", DEFAULT, "loopback"),
    # a last label that is a number makes the host an IPv4 address or nothing
    ("http://256.0.0.1/", DEFAULT, "malformed"),
    ("http://1.2.3.4.5/", DEFAULT, "malformed"),
    ("http://08.0.0.1/", DEFAULT, "malformed"),
    ("http://example.123/", DEFAULT, "malformed"),
    ("http://4294967296/", DEFAULT, "malformed"),
    # names that mean loopback before any lookup
    ("http://localhost/", DEFAULT, "loopback"),
    ("http://localhost./", DEFAULT, "loopback"),
    ("http://LOCALHOST/", DEFAULT, "loopback"),
    ("http://foo.localhost/", DEFAULT, "loopback"),
    ("http://localhost.localdomain/", DEFAULT, "loopback"),
    # hosts no resolver would agree on
    ("http://exa mple.com/", DEFAULT, "malformed"),
    ("http://127.0.0.%31/", DEFAULT, "malformed"),
    ("http://a..b/", DEFAULT, "malformed"),
    ("http://good.example\uff20127.0.0.1/", DEFAULT, "malformed"),
    ("http://" + "a" * 64 + ".com/", DEFAULT, "malformed"),
    ("http://example.com/\r\nHost: evil", DEFAULT, "malformed"),
    ("http://exam\tple.com/", DEFAULT, "malformed"),
]


@pytest.mark.parametrize(("url", "policy", "rule"), REFUSED_URLS)
def test_check_url_refuses(url: str, policy: NetPolicy, rule: str) -> None:
    assert refusal(lambda: check_url(url, policy)).rule == rule


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "ssrf: scheme ftp is not allowed"),
        ("http://example.com:22/", "ssrf: port 22 is not allowed (allowed: 80, 443)"),
        ("http://a@b/", "ssrf: http://***@b/ carries credentials"),
        ("http://user:hunter2@example.com/x", "ssrf: http://***@example.com/x carries credentials"),
        (
            "http://[::ffff:127.0.0.1]/",
            "ssrf: ::ffff:127.0.0.1 is an IPv4-mapped address of 127.0.0.1, which is loopback",
        ),
        ("http://0177.0.0.1/", "ssrf: 127.0.0.1 is loopback"),
    ],
)
def test_check_url_message(url: str, message: str) -> None:
    assert str(refusal(lambda: check_url(url, DEFAULT))) == message


# (url, policy, the Target it parses to)
ACCEPTED_URLS: list[tuple[str, NetPolicy, Target]] = [
    (
        "http://example.com",
        DEFAULT,
        Target("http", "example.com", 80, "/", "example.com", None),
    ),
    (
        "HTTPS://WWW.Example.COM./a/b?x=1&y=2#frag",
        DEFAULT,
        Target("https", "www.example.com", 443, "/a/b?x=1&y=2", "www.example.com", None),
    ),
    (
        "https://example.com:443/",
        DEFAULT,
        Target("https", "example.com", 443, "/", "example.com", None),
    ),
    (
        "http://example.com:/",
        DEFAULT,
        Target("http", "example.com", 80, "/", "example.com", None),
    ),
    (
        "http://example.com:0080/",
        DEFAULT,
        Target("http", "example.com", 80, "/", "example.com", None),
    ),
    (
        "https://example.com:80/",
        DEFAULT,
        Target("https", "example.com", 80, "/", "example.com:80", None),
    ),
    (
        "http://cdn.example.com:8080?q=1",
        ANY_PORT,
        Target("http", "cdn.example.com", 8080, "/?q=1", "cdn.example.com:8080", None),
    ),
    (
        "http://example.com/#only-a-fragment",
        DEFAULT,
        Target("http", "example.com", 80, "/", "example.com", None),
    ),
    (
        "http://example.com/a b/\u00fc?q=\u00e9 x&r=%2F#f",
        DEFAULT,
        Target("http", "example.com", 80, "/a%20b/%C3%BC?q=%C3%A9%20x&r=%2F", "example.com", None),
    ),
    (
        "http://example.com/path?",
        DEFAULT,
        Target("http", "example.com", 80, "/path", "example.com", None),
    ),
    (
        "  http://example.com/x\n",
        DEFAULT,
        Target("http", "example.com", 80, "/x", "example.com", None),
    ),
    (
        "http://B\u00fccher.Example/",
        DEFAULT,
        Target("http", "xn--bcher-kva.example", 80, "/", "xn--bcher-kva.example", None),
    ),
    (
        "http://\u4f8b\u3048.\u30c6\u30b9\u30c8:8080/",
        ANY_PORT,
        Target("http", "xn--r8jz45g.xn--zckzah", 8080, "/", "xn--r8jz45g.xn--zckzah:8080", None),
    ),
    (
        "http://93.184.215.14/",
        DEFAULT,
        Target("http", "93.184.215.14", 80, "/", "93.184.215.14", V4("93.184.215.14")),
    ),
    (
        "http://1572394766/",
        DEFAULT,
        Target("http", "93.184.215.14", 80, "/", "93.184.215.14", V4("93.184.215.14")),
    ),
    (
        "https://[2606:4700:0::1111]/dns",
        DEFAULT,
        Target("https", "2606:4700::1111", 443, "/dns", "[2606:4700::1111]", V6("2606:4700::1111")),
    ),
    (
        "http://[2606:4700::1111]:8080/",
        ANY_PORT,
        Target(
            "http", "2606:4700::1111", 8080, "/", "[2606:4700::1111]:8080", V6("2606:4700::1111")
        ),
    ),
    (
        "http://localhost:8080/",
        LOOPBACK_OK,
        Target("http", "localhost", 8080, "/", "localhost:8080", None),
    ),
    (
        "http://127.0.0.1:8080/x",
        LOOPBACK_OK,
        Target("http", "127.0.0.1", 8080, "/x", "127.0.0.1:8080", V4("127.0.0.1")),
    ),
    (
        "http://0x7f.1:8080/",
        LOOPBACK_OK,
        Target("http", "127.0.0.1", 8080, "/", "127.0.0.1:8080", V4("127.0.0.1")),
    ),
    (
        "http://[::ffff:127.0.0.1]:8080/",
        LOOPBACK_OK,
        Target(
            "http",
            "::ffff:127.0.0.1",
            8080,
            "/",
            "[::ffff:127.0.0.1]:8080",
            V6("::ffff:127.0.0.1"),
        ),
    ),
]


@pytest.mark.parametrize(("url", "policy", "target"), ACCEPTED_URLS)
def test_check_url_parses(url: str, policy: NetPolicy, target: Target) -> None:
    assert check_url(url, policy) == target
