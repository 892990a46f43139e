"""The SSRF guard: private, loopback, link-local and friends are refused after resolution.

Only literal addresses and ``localhost`` (resolved from /etc/hosts) are used: these tests
never send a DNS query or a packet.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from scraper.net.netguard import BlockedAddress, check_url, is_public_ip


def check(url: str, allow: tuple[str, ...] = ()) -> None:
    asyncio.run(check_url(url, allow))


REFUSED = [
    "127.0.0.1", "127.0.0.2", "10.0.0.1", "10.255.255.254", "172.16.5.4", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.251", "239.255.255.250",
    "255.255.255.255", "240.0.0.1", "192.0.2.10", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 form of 127.0.0.1
    "2001:db8::1",
]  # fmt: skip
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:2800:220:1:248:1893:25c8:1946"]


@pytest.mark.parametrize("addr", REFUSED)
def test_is_public_ip_refuses(addr: str) -> None:
    assert not is_public_ip(ipaddress.ip_address(addr))


@pytest.mark.parametrize("addr", PUBLIC)
def test_is_public_ip_accepts(addr: str) -> None:
    assert is_public_ip(ipaddress.ip_address(addr))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2/feed",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3:8080/admin",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "https://localhost/",
        "http://localhost:6379/",
        "http://2130706433/",  # 127.0.0.1 as one decimal number; getaddrinfo reads it so
        "http://0x7f.1/",
    ],
)
def test_check_url_refuses_private_targets(url: str) -> None:
    with pytest.raises(BlockedAddress) as exc:
        check(url)
    message = str(exc.value)
    assert url in message  # the reason names the URL ...
    assert "not a public address" in message  # ... and why


def test_reason_names_the_resolved_address() -> None:
    with pytest.raises(BlockedAddress, match=r"'localhost' resolves to (127\.0\.0\.1|::1)"):
        check("http://localhost/")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://93.184.216.34/", "gopher://1.1.1.1/", "javascript:1"]
)
def test_check_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(BlockedAddress, match="not http"):
        check(url)


def test_check_url_refuses_garbage() -> None:
    with pytest.raises(BlockedAddress):
        check("http:///nohost")
    with pytest.raises(BlockedAddress):
        check("http://[::1/")


@pytest.mark.parametrize("url", ["http://93.184.216.34/", "https://[2606:4700::1111]:8443/x"])
def test_public_literals_pass(url: str) -> None:
    check(url)


def test_allow_list_by_cidr() -> None:
    check("http://127.0.0.2/", allow=("127.0.0.0/8",))
    check("http://10.1.2.3/", allow=("10.0.0.0/8", "192.168.0.0/16"))
    check("http://[::1]/", allow=("::1",))
    with pytest.raises(BlockedAddress):
        check("http://10.1.2.3/", allow=("192.168.0.0/16",))


def test_allow_list_by_host() -> None:
    check("http://localhost:8080/", allow=("localhost",))
    check("http://LOCALHOST./", allow=("localhost",))
    with pytest.raises(BlockedAddress):
        check("http://localhost/", allow=("example.org",))


def test_allow_list_wildcard_host() -> None:
    # A wildcard matches subdomains only and is checked before any lookup, so no DNS.
    check("http://feeds.intranet.example/", allow=("*.intranet.example",))
    with pytest.raises(BlockedAddress):
        check("http://localhost/", allow=("*.localhost.example",))
