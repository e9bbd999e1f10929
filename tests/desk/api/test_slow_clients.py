"""Slow and greedy clients against a running desk, through raw sockets: headers or a body
trickled a byte at a time are cut off at their timeouts, and one address cannot hold more than
its share of connections."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from models import Appeal
from tests.conftest import Desk, free_port

pytestmark = pytest.mark.backend_agnostic

HEADERS = (
    b"POST /api/v1/appeals HTTP/1.1\r\nHost: desk\r\nContent-Type: application/json\r\n"
    b"Content-Length: 200\r\n"
)


async def slow_desk(start_desk: Callable[..., Any], **http: Any) -> Desk:
    desk: Desk = await start_desk(http={"host": "127.0.0.1", "port": free_port(), **http})
    return desk


async def trickle(
    desk: Desk, data: bytes, head: bytes = b"", every_s: float = 0.1, give_up_s: float = 8.0
) -> tuple[float, bytes]:
    """Send ``head`` at once, then ``data`` a byte at a time until the server closes (or
    ``give_up_s`` passed); (seconds it took from the first byte of ``data``, the answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", desk.service.bound_port)
    writer.write(head)
    started = time.monotonic()
    answer = bytearray()

    async def read() -> None:
        # The server answers and closes while bytes are still coming: the kernel resets the
        # connection at the next one, and the read after the answer meets the reset (CI met it).
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(4096):
                answer.extend(chunk)

    reading = asyncio.create_task(read())
    try:
        for byte in data:
            if reading.done() or time.monotonic() - started > give_up_s:
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(every_s)
        await asyncio.wait_for(reading, timeout=max(0.1, give_up_s - (time.monotonic() - started)))
    except TimeoutError:
        pass  # still open when the client gave up
    finally:
        writer.close()
    return time.monotonic() - started, bytes(answer)


async def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_header_timeout(
    start_desk: Callable[..., Any],
) -> None:
    desk = await slow_desk(start_desk, header_timeout_s=1.0)
    took, answer = await trickle(desk, HEADERS * 100)  # would take a minute and more
    assert 0.9 <= took < 3.0, took
    assert answer == b""  # closed: no request was ever made


async def test_a_body_trickled_a_byte_at_a_time_gets_a_408_at_the_body_timeout(
    start_desk: Callable[..., Any],
) -> None:
    desk = await slow_desk(start_desk, body_timeout_s=1.0)
    took, answer = await trickle(desk, b'{"name": "' + b"x" * 190, head=HEADERS + b"\r\n")
    assert 0.9 <= took < 4.0, took
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"the request body did not arrive within 1 s" in body
    assert await Appeal.all().count() == 0


async def test_one_address_holds_no_more_than_its_share_of_connections(
    start_desk: Callable[..., Any],
) -> None:
    desk = await slow_desk(start_desk, connections_per_address=3)
    port = desk.service.bound_port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = await asyncio.wait_for(reader.read(), timeout=5)  # answered and closed at once
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 5\r\n" in answer and b"too_many_connections" in answer

    _, first = held.pop()
    first.close()
    await first.wait_closed()
    await asyncio.sleep(0.2)  # the server sees the close
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: desk\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    for _, w in held:
        w.close()
