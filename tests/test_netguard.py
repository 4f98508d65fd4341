"""The SSRF guard: model-chosen URLs never reach private, loopback or metadata addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import quote

import pytest

from tests.fakes.web import FakeWeb
from tools.guards.netguard import (
    Refused,
    address_problem,
    check_url,
    guarded_get,
    literal_ip,
    vetted_addresses,
)

NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://100.64.0.1/", "shared"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://2130706433/", "loopback"),  # decimal 127.0.0.1
        ("http://0x7f000001/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://224.0.0.1/", "multicast"),
        ("http://localhost/", "local name"),
        ("http://metadata.google.internal/", "local name"),
        ("file:///etc/passwd", "only http"),
        ("ftp://example.com/", "only http"),
        ("gopher://example.com/", "only http"),
        ("http://user:pw@example.com/", "credentials"),
    ],
)
def test_refused_before_any_connection(url: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        check_url(url, NONE)


def test_public_addresses_pass() -> None:
    assert address_problem(ipaddress.ip_address("93.184.216.34")) is None
    assert literal_ip("example.com") is None
    assert check_url("https://example.com/x", NONE).port == 443


async def test_a_hostname_resolving_to_loopback_is_refused() -> None:
    # The name check would catch "localhost" first; this proves the DNS-based check on its own.
    with pytest.raises(Refused, match=r"localhost resolves to 127\.0\.0\.1 is a loopback"):
        await vetted_addresses("localhost", 80)


async def test_allow_list_and_redirect_to_private_address() -> None:
    async with FakeWeb() as web:
        allow = frozenset({f"127.0.0.1:{web.port}"})
        ok = await guarded_get(f"{web.url}/api/data", allow_hosts=allow, max_bytes=10_000, timeout=5)
        assert ok.status == 200 and b"fake" in ok.body
        with pytest.raises(Refused, match="private"):
            await guarded_get(
                f"{web.url}/redirect?to=http://10.0.0.7/admin", allow_hosts=allow, max_bytes=10_000, timeout=5
            )
        # a redirect back to loopback on another port is refused too: only the allowed port is exempt
        with pytest.raises(Refused, match="loopback"):
            await guarded_get(
                f"{web.url}/redirect?to=http://127.0.0.1:{web.port + 1}/",
                allow_hosts=allow,
                max_bytes=10_000,
                timeout=5,
            )
        assert web.hits == [
            "/api/data",
            "/redirect?to=http://10.0.0.7/admin",
            f"/redirect?to=http://127.0.0.1:{web.port + 1}/",
        ]
        with pytest.raises(Refused, match="loopback"):
            await guarded_get(f"{web.url}/api/data", allow_hosts=NONE, max_bytes=10_000, timeout=5)


async def test_body_is_capped() -> None:
    async with FakeWeb() as web:
        allow = frozenset({f"127.0.0.1:{web.port}"})
        big = await guarded_get(f"{web.url}/big", allow_hosts=allow, max_bytes=100_000, timeout=5)
        assert big.truncated and len(big.body) == 100_000


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Stand-in for the resolver (the environment, not product code); each name's answers in turn."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return await real(host, port, *args, **kwargs)
        asked.append(host)
        ip = answers[host][min(len(asked), len(answers[host])) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


async def test_a_name_resolving_to_loopback_is_never_contacted(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeWeb() as web:
        fake_dns(monkeypatch, {"innocent.example": ["127.0.0.1"]})
        with pytest.raises(Refused, match=r"innocent\.example resolves to 127\.0\.0\.1 is a loopback"):
            await guarded_get(
                f"http://innocent.example:{web.port}/api/data", allow_hosts=NONE, max_bytes=1_000, timeout=5
            )
        assert web.hits == []


async def test_the_connection_uses_the_address_resolved_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # A rebinding server answers differently the second time; the connector must not ask again.
    async with FakeWeb() as web:
        asked = fake_dns(monkeypatch, {"rebind.example": ["127.0.0.1", "10.9.9.9"]})
        allow = frozenset({f"rebind.example:{web.port}"})
        got = await guarded_get(
            f"http://rebind.example:{web.port}/api/data", allow_hosts=allow, max_bytes=1_000, timeout=5
        )
        assert got.status == 200 and asked == ["rebind.example"] and web.hits == ["/api/data"]


async def test_an_allow_listed_name_is_resolved_and_exempt() -> None:
    async with FakeWeb() as web:
        allow = frozenset({f"localhost:{web.port}"})
        got = await guarded_get(
            f"http://localhost:{web.port}/api/data", allow_hosts=allow, max_bytes=1_000, timeout=5
        )
        assert got.status == 200 and b"fake" in got.body
        with pytest.raises(Refused, match="local name"):  # only that port
            await guarded_get(
                f"http://localhost:{web.port + 1}/", allow_hosts=allow, max_bytes=1_000, timeout=5
            )


async def test_too_many_redirects() -> None:
    async with FakeWeb() as web:
        allow = frozenset({f"127.0.0.1:{web.port}"})
        url = f"{web.url}/api/data"
        for _ in range(6):
            url = f"{web.url}/redirect?to={quote(url, safe='')}"
        with pytest.raises(Refused, match="more than 5 redirects"):
            await guarded_get(url, allow_hosts=allow, max_bytes=1_000, timeout=5)
        assert len(web.hits) == 6 and "/api/data" not in web.hits
