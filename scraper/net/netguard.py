"""Refuse to fetch URLs that point into private networks (SSRF guard for full-text fetches).

Feed content names the pages that full-text mode fetches, so a hostile feed could make the
daemon request http://169.254.169.254/ (cloud metadata) or an admin page on 127.0.0.1.
:func:`check_url` resolves the host as the HTTP client would and refuses if *any* address
is not public (the client may connect to either).  The fetcher checks every hop and then
connects to the approved address (``fetch._pinned``), which closes DNS rebinding.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["BlockedAddress", "check_url", "is_public_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Ranges refused on top of what the ipaddress flags cover.  The flags changed between
#: Python releases (is_private / is_global were corrected in 3.11.10, 3.12.4 and 3.13), so
#: the ranges this guard depends on are spelled out rather than trusted to the version.
#: Sources: IANA IPv4/IPv6 Special-Purpose Address Registries; RFC 6598 (100.64/10).
_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT, shared address space
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "::/128",
        "::1/128",
        "::/96",  # IPv4-compatible (deprecated), checked below as well
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "2001:10::/28",  # ORCHID
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)

#: IPv6 ranges that carry an IPv4 address inside; the embedded address decides.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """The URL may not be fetched; the message names the URL and the reason."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client address
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_ip(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address (IPv6 forms of IPv4 unwrapped)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False  # fe80::1%eth0 and friends
        v4 = _embedded_v4(ip)
        if v4 is not None and not is_public_ip(v4):
            return False
    if (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global):
        return False
    return not any(ip in net for net in _BLOCKED if net.version == ip.version)


def _parse_allow(allow: Sequence[str]) -> tuple[set[str], list[IPNetwork]]:
    """Split the allow-list into host names and networks (a bare address is a /32 or /128)."""
    hosts: set[str] = set()
    nets: list[IPNetwork] = []
    for entry in allow:
        entry = entry.strip()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return hosts, nets


def _host_allowed(host: str, hosts: set[str]) -> bool:
    """Exact name, or "*.example.org" / ".example.org" for the subdomains of a name."""
    if host in hosts:
        return True
    for h in hosts:
        suffix = h[1:] if h.startswith("*.") else h if h.startswith(".") else None
        if suffix and host.endswith(suffix):
            return True
    return False


async def check_url(url: str, allow: Sequence[str] = ()) -> list[str]:
    """Raise BlockedAddress unless ``url`` is http(s) and every address of its host is public.

    ``allow`` lifts the refusal for listed host names (exact, or ``*.domain``) and for
    addresses inside listed CIDRs.  Resolution errors propagate as ``OSError`` (the
    request would fail the same way).  Returns the approved addresses, so the caller can
    connect to one of them rather than resolve again (a second lookup could answer
    differently: DNS rebinding); empty for an allow-listed host name.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BlockedAddress(f"refusing {url!r}: malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedAddress(f"refusing {url!r}: scheme {scheme or '(none)'!r} is not http(s)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BlockedAddress(f"refusing {url!r}: no host")
    allow_hosts, allow_nets = _parse_allow(allow)
    if allow_hosts and _host_allowed(host, allow_hosts):
        return []
    if port is None:
        port = 443 if scheme == "https" else 80

    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise BlockedAddress(f"refusing {url!r}: {host!r} resolved to no address")
    approved: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        raw = str(sockaddr[0])
        approved.append(raw)
        ip = ipaddress.ip_address(raw.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and len(sockaddr) >= 4 and sockaddr[3]:
            ip = ipaddress.IPv6Address(f"{ip}%{sockaddr[3]}")
        if is_public_ip(ip):
            continue
        if any(ip.version == net.version and ip in net for net in allow_nets):
            continue
        raise BlockedAddress(
            f"refusing {url!r}: {host!r} resolves to {ip}, which is not a public address "
            "(add the host or a CIDR to the fetch allow-list to permit it)"
        )
    return approved
