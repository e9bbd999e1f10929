"""Slow and greedy clients: read timeouts for a request's headers and body, and a cap on the
connections one address may hold open.

* Headers: aiohttp closes a connection that is still waiting for a request's headers when its
  keep-alive timer fires; the timer starts when the connection opens and after each answer,
  so ``http.header_timeout_s`` bounds both the headers and an idle keep-alive.
* Body: ``body_deadline`` fails a read of a body that has not arrived within
  ``http.body_timeout_s``: 408.
* Connections: ``CappedSite`` answers a connection beyond ``http.connections_per_address``
  from one address with 503 and closes it (trusted proxies carry many clients: not counted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from desk.api.errors import ApiError
from desk.config.settings import HttpSettings

log = logging.getLogger(__name__)

# After an early answer (408, 413) aiohttp reads what the client still sends for this long
# (default 10 s), so that the client sees the answer; a slow client must not buy more time.
LINGER_S = 1.0
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def runner_options(settings: HttpSettings) -> dict[str, Any]:
    """The ``AppRunner`` options that bound how long a client may take."""
    return {"keepalive_timeout": settings.header_timeout_s, "lingering_time": LINGER_S}


def body_deadline(timeout_s: float) -> Any:
    """A middleware that gives each request's body ``timeout_s`` to arrive: a read of it (by
    the view, in whatever form) still waiting then fails as a 408."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        body = request.content

        def expire() -> None:
            if not body.is_eof():  # all of it arrived in time: whenever it is read, it is there
                body.set_exception(
                    ApiError(
                        408, "timeout", f"the request body did not arrive within {timeout_s:g} s"
                    )
                )

        deadline = asyncio.get_running_loop().call_later(timeout_s, expire)
        try:
            return await handler(request)
        finally:
            deadline.cancel()

    return middleware


class ConnectionCounts:
    """Open connections per address, beyond ``cap`` refused; trusted proxies not counted."""

    def __init__(self, cap: int, trusted: Sequence[IPNetwork]) -> None:
        self._cap = cap
        self._trusted = tuple(trusted)
        self._open: dict[str, int] = {}

    def open(self, address: str) -> bool:
        """Count a new connection from ``address``; False (and not counted) beyond the cap."""
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            peer = None
        if peer is not None and any(peer in network for network in self._trusted):
            return True
        if self._open.get(address, 0) >= self._cap:
            return False
        self._open[address] = self._open.get(address, 0) + 1
        return True

    def close(self, address: str) -> None:
        """A connection from ``address`` (one that was counted) ended."""
        left = self._open.get(address, 0) - 1
        if left > 0:
            self._open[address] = left
        else:
            self._open.pop(address, None)


def _refusal() -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "too_many_connections",
                "message": "too many open connections from your address",
                "fields": [],
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 5\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


REFUSAL = _refusal()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted against its address."""

    def __init__(self, inner: asyncio.Protocol, counts: ConnectionCounts) -> None:
        self._inner = inner
        self._counts = counts
        self._address: str | None = None  # set once admitted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._counts.open(address):
            log.warning("connection refused: too many from one address")
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSAL)
            transport.close()
            return
        self._address = address
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._address is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._address is not None else None

    def pause_writing(self) -> None:
        if self._address is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._address is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is not None:
            self._counts.close(self._address)
            self._inner.connection_lost(exc)


class CappedSite(web.TCPSite):
    """A TCP site whose connections are counted per address (``http.connections_per_address``)."""

    def __init__(self, runner: web.BaseRunner, settings: HttpSettings, port: int) -> None:
        super().__init__(runner, settings.host, port)
        self._counts = ConnectionCounts(settings.connections_per_address, settings.trusted_proxies)

    async def start(self) -> None:
        """Listen, as ``TCPSite`` does, through the counting protocol."""
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        counts = self._counts
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Counted(server(), counts),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
