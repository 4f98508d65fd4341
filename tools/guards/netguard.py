"""Fetching model-chosen URLs safely: no private, loopback, link-local or metadata addresses.

Every address a host resolves to is checked, the connection goes only to checked addresses (a
custom resolver, so DNS rebinding cannot swap them), and every redirect hop is checked again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from tools.toolkit.errors import UserFacingError

METADATA = {
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16", "169.254.170.2")
}
SHARED = ipaddress.ip_network("100.64.0.0/10")
MAX_REDIRECTS = 5
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(UserFacingError):
    """The URL may not be fetched; the message says why in plain words."""


def address_problem(ip: IPAddress) -> str | None:
    """Why this address may not be contacted, or None when it is public."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip in METADATA:
        return f"{ip} is a cloud metadata address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_unspecified:
        return f"{ip} is an unspecified address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in SHARED:
        return f"{ip} is a shared (carrier-grade NAT) address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return f"{ip} is a private or reserved address"
    return None


def literal_ip(host: str) -> IPAddress | None:
    """Parse a host that is an IP, including decimal, hex and octal IPv4 spellings."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # inet_aton accepts 2130706433, 0x7f000001, 0177.0.0.1 and 127.1
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    allowed: bool  # on the operator's allow-list: exempt from the address checks


def check_url(url: str, allow_hosts: frozenset[str]) -> Target:
    """Scheme, credentials and literal-address checks that need no DNS."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused(f"only http and https URLs may be fetched, not {parts.scheme or 'no scheme'!r}")
    if parts.username or parts.password:
        raise Refused("URLs with credentials are not fetched")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise Refused("the URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    allowed = host in allow_hosts or f"{host}:{port}" in allow_hosts
    if not allowed:
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise Refused(f"{host} is a local name")
        ip = literal_ip(host)
        if ip is not None and (problem := address_problem(ip)):
            raise Refused(problem)
    return Target(url, host, port, allowed)


def _answer(host: str, ip: IPAddress, port: int, family: int, proto: int = 0) -> ResolveResult:
    return ResolveResult(
        hostname=host, host=str(ip), port=port, family=family, proto=proto, flags=socket.AI_NUMERICHOST
    )


async def _resolve(host: str, port: int) -> list[tuple[int, int, IPAddress]]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"{host} could not be resolved") from exc
    return [(family, proto, ipaddress.ip_address(sockaddr[0])) for family, _, proto, _, sockaddr in infos]


async def vetted_addresses(host: str, port: int) -> list[ResolveResult]:
    """Resolve and check every address; one bad address refuses the host."""
    resolved = await _resolve(host, port)
    for _, _, ip in resolved:
        if problem := address_problem(ip):
            raise Refused(f"{host} resolves to {problem}")
    return [_answer(host, ip, port, family, proto) for family, proto, ip in resolved]


async def pinned_answers(target: Target) -> dict[str, list[ResolveResult]]:
    """What the connector may connect to for this hop, decided before it connects."""
    ip = literal_ip(target.host)
    if ip is not None:  # spellings like 0x5db8d822 reach the resolver: answer with the parsed address
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return {target.host: [_answer(target.host, ip, target.port, family)]}
    if target.allowed:  # the operator's own hosts: resolved, not vetted
        resolved = await _resolve(target.host, target.port)
        return {target.host: [_answer(target.host, a, target.port, f, p) for f, p, a in resolved]}
    return {target.host: await vetted_addresses(target.host, target.port)}


class PinnedResolver(AbstractResolver):
    """Answers only with the addresses already vetted for this request."""

    def __init__(self, answers: dict[str, list[ResolveResult]]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        if host in self.answers:
            return self.answers[host]
        raise OSError(f"{host} was not vetted")

    async def close(self) -> None:
        return None


@dataclass
class Fetched:
    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes
    truncated: bool


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


async def guarded_get(
    url: str,
    *,
    allow_hosts: frozenset[str],
    max_bytes: int,
    timeout: float,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    data: bytes | None = None,
    before_redirect: Callable[[str], Awaitable[None]] | None = None,
) -> Fetched:
    """Request a model-chosen URL (GET unless told), re-checking every redirect hop; body capped.

    `before_redirect` is awaited with each hop's URL before it is requested (the egress rule: it
    raises to stop). A 307/308 repeats the method and body, but only to the same host: a body is
    never resent to another host unasked. Other redirects continue as a GET without a body.
    """
    current = url
    async with asyncio.timeout(timeout):
        for _ in range(MAX_REDIRECTS + 1):
            target = check_url(current, allow_hosts)
            answers = await pinned_answers(target)
            connector = aiohttp.TCPConnector(resolver=PinnedResolver(answers), use_dns_cache=False)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.request(
                    method, current, data=data, allow_redirects=False, headers=headers
                ) as response,
            ):
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    hop = urljoin(current, response.headers["Location"])
                    if response.status not in (307, 308):
                        method, data = "GET", None
                    elif data is not None and _origin(hop) != _origin(current):
                        raise Refused(
                            f"{target.host} redirected the request and its body to another host "
                            f"({urlsplit(hop).hostname}); the body was not sent there"
                        )
                    if before_redirect is not None:
                        await before_redirect(hop)
                    current = hop
                    continue
                body = bytearray()
                truncated = False
                async for chunk in response.content.iter_chunked(65_536):
                    body += chunk
                    if len(body) > max_bytes:
                        del body[max_bytes:]
                        truncated = True
                        break
                return Fetched(
                    url,
                    current,
                    response.status,
                    response.headers.get("Content-Type", ""),
                    bytes(body),
                    truncated,
                )
    raise Refused(f"more than {MAX_REDIRECTS} redirects")
