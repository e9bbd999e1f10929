"""A TCP proxy for drills and tests that breaks connections the way networks do."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    """A TCP proxy in front of a server (IMAP, PostgreSQL) that can drop a connection in the
    middle of an answer: ``cut_after(n)`` closes the next connection that has passed ``n`` more
    bytes from the server to the client; ``freeze()`` makes every connection go silent without
    closing (a half-open TCP connection: a peer gone, no FIN, no RST), ``thaw()`` ends that."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._cut_after: int | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        self.port = 0

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and close every connection (frozen ones too)."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        self._flowing.set()

    def cut_after(self, count: int) -> None:
        """Drop the connection once ``count`` more bytes came from the server."""
        self._cut_after = count

    def freeze(self) -> None:
        """Stop passing bytes either way; connections stay open."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Pass bytes again (what was read while frozen goes on)."""
        self._flowing.set()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._target)
        self._writers |= {client_w, server_w}

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, downstream: bool
        ) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(4096):
                    await self._flowing.wait()
                    if downstream and self._cut_after is not None:
                        self._cut_after -= len(data)
                        if self._cut_after <= 0:
                            self._cut_after = None
                            self.cuts += 1
                            writer.write(data[: len(data) // 2])  # half an answer, then nothing
                            await writer.drain()
                            break
                    writer.write(data)
                    await writer.drain()
            for w in (client_w, server_w):
                w.close()
                self._writers.discard(w)

        await asyncio.gather(pipe(client_r, server_w, False), pipe(server_r, client_w, True))
