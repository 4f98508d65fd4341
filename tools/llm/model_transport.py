"""The model client's bytes carried by aiohttp instead of httpx2's own transport (httpcore).

The openai client still builds, authenticates, retries and judges every request on its httpx2
client; only the HTTP exchange goes through aiohttp, whose C parser reads a streamed answer for
about half the CPU httpcore's pure-Python one spends per chunk (bench/load.py, issue 22). Its
failures become the httpx2 errors openai expects, so a refused connection is still openai's
APIConnectionError and a read that takes too long its APITimeoutError.

The model keeps a pool of its own, as it had with httpx2: a hundred answers streaming at once
(WORK_CONCURRENCY) would otherwise hold every connection of the Slack session's pool and stall
the live updates of those same answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx2


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """httpx2 requests sent with an aiohttp session made on first use (inside the event loop)."""

    def __init__(self, *, max_connections: int | None, keepalive: float | None) -> None:
        self._limit = max_connections or 0  # aiohttp: 0 is no limit
        self._keepalive = keepalive
        self._ssl = httpx2.create_ssl_context()  # the CA bundle and SSL_CERT_* httpx2 would use
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit, keepalive_timeout=self._keepalive, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        try:
            response = await self._open().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,  # httpx2 follows them, as with its own transport
                auto_decompress=False,  # httpx2 decodes what its Accept-Encoding asked for
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        except aiohttp.ClientError as exc:
            raise _mapped(exc, connecting=True) from exc
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()}
        return httpx2.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx2.AsyncByteStream):
    """A response body as aiohttp reads it: each chunk as soon as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _mapped(exc, connecting=False) from exc

    async def aclose(self) -> None:
        # Back to the pool when the body was read to its end; closed when it was cut short.
        self._response.release()


def _mapped(exc: aiohttp.ClientError, *, connecting: bool) -> httpx2.TransportError:
    """The httpx2 error httpcore raises for the same failure."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx2.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx2.ReadTimeout(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx2.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unknown host, TLS
        return httpx2.ConnectError(message)
    if isinstance(
        exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)
    ):
        return httpx2.RemoteProtocolError(message)  # the server broke off or sent no valid HTTP
    return httpx2.ConnectError(message) if connecting else httpx2.ReadError(message)
