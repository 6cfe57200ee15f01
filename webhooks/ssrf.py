"""Server-side request forgery protection for webhook targets.

A target is checked twice: at registration (:func:`check_url`, resolving the host) and at
connect time (:class:`SafeResolver`, which filters what aiohttp may connect to, so a DNS answer
that changes between the two checks cannot point a delivery at an internal address). aiohttp does
not resolve literal IP hosts, so :func:`check_url_static` must run before each request too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from webhooks.errors import TargetRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NetworkLike = str | Network


def _nets(*pairs: tuple[str, str]) -> list[tuple[Network, str]]:
    return [(ipaddress.ip_network(net), why) for net, why in pairs]


# Explicit lists rather than ``is_private``/``is_global``, whose meaning changed across Python
# versions; the reason is what the refusal says.
REFUSED_V4 = _nets(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
REFUSED_V6 = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible"),
    ("64:ff9b:1::/48", "local NAT64"),
    ("100::/64", "discard"),
    ("2001::/32", "Teredo"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
    ("::/8", "reserved"),
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_networks(networks: Iterable[NetworkLike]) -> list[Network]:
    """Allow-list entries as networks (strings are parsed non-strictly)."""
    return [
        n if not isinstance(n, str) else ipaddress.ip_network(n, strict=False) for n in networks
    ]


def refusal(address: str | Address, allow: Sequence[NetworkLike] = ()) -> str | None:
    """Why ``address`` may not be a webhook target, or None when it may."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    allowed = parse_networks(allow)
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
    if any(ip.version == n.version and ip in n for n in allowed):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        # Forms that embed an IPv4 address reach that address: judge it instead.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            why = refusal(embedded, allowed)
            return f"{why} (embedded in {ip})" if why else None
        table = REFUSED_V6
    else:
        table = REFUSED_V4
    for net, why in table:
        if ip in net:
            return f"{ip} is {why}"
    return None


def check_address(address: str | Address, allow: Sequence[NetworkLike] = ()) -> None:
    """Raise TargetRefused when ``address`` may not be a webhook target."""
    why = refusal(address, allow)
    if why:
        raise TargetRefused(f"address not allowed: {why}")


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url_static(url: str, allow: Sequence[NetworkLike] = ()) -> URL:
    """Check what needs no DNS: scheme, host, userinfo and a literal IP host; returns the URL."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise TargetRefused("not a valid URL") from exc
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused("the URL must use http or https")
    if not parsed.host:
        raise TargetRefused("the URL has no host")
    if parsed.user is not None or parsed.password is not None:
        raise TargetRefused("the URL must not carry credentials")
    literal = _literal(parsed.host)
    if literal is not None:
        check_address(literal, allow)
    return parsed


async def check_url(url: str, allow_networks: Sequence[NetworkLike] = ()) -> None:
    """Raise TargetRefused unless ``url`` is http(s) and all its host's addresses are allowed."""
    parsed = check_url_static(url, allow_networks)
    host = parsed.host
    assert host is not None
    if _literal(host) is not None:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, parsed.port or 0, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the host {host!r} does not resolve") from exc
    if not infos:
        raise TargetRefused(f"the host {host!r} does not resolve")
    # Any refused address refuses the URL: the connection could go to any of them.
    for info in infos:
        check_address(str(info[4][0]), allow_networks)


class SafeResolver(AbstractResolver):
    """An aiohttp resolver that drops refused addresses, so connections reach only checked ones."""

    def __init__(self, allow_networks: Sequence[NetworkLike] = ()) -> None:
        self._allow = parse_networks(allow_networks)
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``; raise TargetRefused when no allowed address remains."""
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if refusal(r["host"], self._allow) is None]
        if not kept:
            why = refusal(results[0]["host"], self._allow) if results else "no address"
            raise TargetRefused(f"address not allowed: {why}")
        return kept

    async def close(self) -> None:
        """Release the wrapped resolver."""
        await self._inner.close()
