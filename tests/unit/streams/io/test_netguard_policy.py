"""The address guard under policies an operator sets: allowed networks and hosts, denied
hosts, vetting every address a name resolves to, redirects, and reading the settings."""

from __future__ import annotations

import ipaddress
import re

import pytest

from streams.io.netguard import NetPolicy, Target, check_address, check_url, resolve_redirect, vet
from tests.support.netguard_kit import DEFAULT, LOOPBACK_OK, V4, V6, refusal


def test_allow_networks_admit_loopback_and_its_mapped_form() -> None:
    for text in ("127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1"):
        check_address(ipaddress.ip_address(text), LOOPBACK_OK)
    # ... and nothing else internal
    assert refusal(lambda: check_address(V6("::1"), LOOPBACK_OK)).rule == "loopback"
    assert refusal(lambda: check_address(V4("10.0.0.1"), LOOPBACK_OK)).rule == "private"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("10.1.2.3", None),
        ("10.1.255.255", None),
        ("::ffff:10.1.2.3", None),
        ("10.2.0.1", "private"),
        ("10.0.255.255", "private"),
        ("::ffff:10.2.0.1", "ipv4_mapped"),
        # an embedding other than the mapped form is not the same socket destination
        ("64:ff9b::a01:203", "nat64"),
    ],
)
def test_allow_network_for_an_internal_cdn(text: str, rule: str | None) -> None:
    policy = NetPolicy(allow_networks=(ipaddress.ip_network("10.1.0.0/16"),))
    address = ipaddress.ip_address(text)
    if rule is None:
        check_address(address, policy)
    else:
        assert refusal(lambda: check_address(address, policy)).rule == rule


def test_ipv6_allow_network_admits_the_ipv4_it_maps() -> None:
    policy = NetPolicy(allow_networks=(ipaddress.ip_network("::ffff:127.0.0.0/104"),))
    check_address(V4("127.0.0.1"), policy)


@pytest.mark.parametrize(
    ("network", "text", "rule"),
    [
        ("169.254.0.0/16", "169.254.1.1", None),
        ("169.254.0.0/16", "169.254.169.254", "metadata"),
        ("169.254.0.0/16", "::ffff:169.254.169.254", "ipv4_mapped"),
        ("100.64.0.0/10", "100.100.100.200", "metadata"),
        ("169.254.169.254/32", "169.254.169.254", None),
        ("fd00::/8", "fd00:ec2::254", "metadata"),
        ("fd00:ec2::254/128", "fd00:ec2::254", None),
        # A translator prefix allowed whole still does not reach metadata through it.
        ("64:ff9b::/96", "64:ff9b::a9fe:a9fe", "nat64"),
        ("2002::/16", "2002:a9fe:a9fe::1", "6to4"),
        ("64:ff9b::/96", "64:ff9b::a0a:a0a", None),
    ],
)
def test_allow_network_opens_metadata_only_when_naming_it_alone(
    network: str, text: str, rule: str | None
) -> None:
    policy = NetPolicy(allow_networks=(ipaddress.ip_network(network),))
    address = ipaddress.ip_address(text)
    if rule is None:
        check_address(address, policy)
    else:
        assert refusal(lambda: check_address(address, policy)).rule == rule


HOSTS = NetPolicy(
    allow_hosts=("*.example.com", "cdn.shop.test", "93.184.215.*"),
    deny_hosts=("secret.example.com", "*.internal.example.com"),
)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://www.example.com/", None),
        ("http://A.B.EXAMPLE.COM./", None),
        ("http://cdn.shop.test/", None),
        ("http://93.184.215.14/", None),
        ("http://example.com/", "host_not_allowed"),
        ("http://cdn.shop.test.evil.com/", "host_not_allowed"),
        ("http://8.8.8.8/", "host_not_allowed"),
        ("http://localhost/", "host_not_allowed"),
        ("http://Secret.Example.com/", "host_denied"),
        ("http://db.internal.example.com/", "host_denied"),
    ],
)
def test_allow_and_deny_hosts(url: str, rule: str | None) -> None:
    if rule is None:
        assert check_url(url, HOSTS).host == url.split("/")[2].lower().removesuffix(".")
    else:
        assert refusal(lambda: check_url(url, HOSTS)).rule == rule


def test_deny_hosts_alone_leaves_other_hosts_open() -> None:
    policy = NetPolicy(deny_hosts=("*.evil.test",))
    assert check_url("http://good.test/", policy).host == "good.test"
    assert refusal(lambda: check_url("http://x.evil.test/", policy)).rule == "host_denied"


def test_host_patterns_do_not_admit_an_internal_literal() -> None:
    policy = NetPolicy(allow_hosts=("10.*",))
    assert refusal(lambda: check_url("http://10.0.0.1/", policy)).rule == "private"


def test_vet_returns_parsed_addresses_in_order_without_duplicates() -> None:
    found = ["93.184.215.14", "2606:4700::1111", "93.184.215.14", "8.8.8.8"]
    assert vet("example.com", found, DEFAULT) == [
        V4("93.184.215.14"),
        V6("2606:4700::1111"),
        V4("8.8.8.8"),
    ]


@pytest.mark.parametrize(
    ("found", "rule"),
    [
        (["93.184.215.14", "10.0.0.5"], "private"),
        (["127.0.0.1", "93.184.215.14"], "loopback"),
        (["2606:4700::1111", "::ffff:169.254.169.254"], "ipv4_mapped"),
        (["93.184.215.14", "169.254.169.254"], "metadata"),
        ([], "no_address"),
        (["93.184.215.14", "not-an-address"], "malformed"),
    ],
)
def test_vet_refuses_the_whole_name_for_one_bad_address(found: list[str], rule: str) -> None:
    exc = refusal(lambda: vet("rebind.example", found, DEFAULT))
    assert exc.rule == rule
    assert "rebind.example" in str(exc)


def test_vet_honours_allow_networks() -> None:
    assert vet("localhost", ["127.0.0.1"], LOOPBACK_OK) == [V4("127.0.0.1")]
    assert refusal(lambda: vet("localhost", ["127.0.0.1", "::1"], LOOPBACK_OK)).rule == "loopback"


BASE = Target("https", "example.com", 8443, "/a/b/c?x=1", "example.com:8443", None)


@pytest.mark.parametrize(
    ("location", "url"),
    [
        ("https://other.example/z", "https://other.example/z"),
        ("http://127.0.0.1/", "http://127.0.0.1/"),
        ("//cdn.example/img.png", "https://cdn.example/img.png"),
        ("/root?y=2", "https://example.com:8443/root?y=2"),
        ("d", "https://example.com:8443/a/b/d"),
        ("../d", "https://example.com:8443/a/d"),
        ("?y=2", "https://example.com:8443/a/b/c?y=2"),
        ("  /spaced ", "https://example.com:8443/spaced"),
    ],
)
def test_resolve_redirect(location: str, url: str) -> None:
    assert resolve_redirect(BASE, location) == url


def test_resolve_redirect_keeps_ipv6_brackets_and_is_checked_again() -> None:
    base = check_url("http://[2606:4700::1111]/a/b", DEFAULT)
    assert resolve_redirect(base, "c") == "http://[2606:4700::1111]/a/c"
    bounced = resolve_redirect(base, "//169.254.169.254/latest")
    assert refusal(lambda: check_url(bounced, DEFAULT)).rule == "metadata"


def test_from_settings_parses_and_normalizes() -> None:
    policy = NetPolicy.from_settings(
        schemes=["HTTP", "https", ""],
        ports=[80, 443, 8080],
        allow_networks=["127.0.0.0/8", " 10.1.0.0/16 ", "", "fd00:1::/64"],
        allow_hosts=["*.Example.COM.", "b\u00fccher.example"],
        deny_hosts=["secret.example.com"],
    )
    assert policy == NetPolicy(
        allowed_schemes=frozenset({"http", "https"}),
        allowed_ports=frozenset({80, 443, 8080}),
        allow_networks=(
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("10.1.0.0/16"),
            ipaddress.ip_network("fd00:1::/64"),
        ),
        allow_hosts=("*.example.com", "xn--bcher-kva.example"),
        deny_hosts=("secret.example.com",),
    )
    assert check_url("http://B\u00fccher.example/", policy).host == "xn--bcher-kva.example"


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "not-a-network", "10.1.2.3/16", "fd00::/129"])
def test_from_settings_names_a_bad_cidr(cidr: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"allow_networks: '{cidr}'")):
        NetPolicy.from_settings(
            schemes=["http"], ports=[80], allow_networks=[cidr], allow_hosts=[], deny_hosts=[]
        )


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_from_settings_refuses_a_port_out_of_range(port: int) -> None:
    with pytest.raises(ValueError, match=f"ports: {port} "):
        NetPolicy.from_settings(
            schemes=["http"], ports=[port], allow_networks=[], allow_hosts=[], deny_hosts=[]
        )
