"""A TCP forwarder on loopback that can pass traffic, stall it, blackhole it, or reset it.

Put it between a service and what it talks to (ingest and the broker, ingest and the
database) and the link fails the way networks do, with both ends left running:

- ``pass``: bytes go through unchanged, both ways;
- ``stall``: nothing is read any more, so nothing moves and nothing is lost; the peers see a
  silent link (their TCP stack still acknowledges what fits in the buffers) until it passes
  again;
- ``blackhole``: the connections stay open and every byte is read and silently dropped (in
  one direction or both); a connection opened meanwhile is accepted and goes nowhere. It may
  be armed to begin just after the client sends given bytes (``COMMIT``: the database
  commits, its answer never comes back). A connection that has lost bytes can never carry a
  byte stream again: :meth:`FaultProxy.restore` resets it, as a middlebox that has lost its
  state does;
- ``reset``: every open connection is aborted with a TCP RST on both sides.

The proxy runs an asyncio loop in a thread of its own; the control methods may be called from
any thread and return once the change is in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeVar

CHUNK: Final = 65_536
CONNECT_TIMEOUT_S: Final = 2.0
T = TypeVar("T")


class Mode(StrEnum):
    PASS = "pass"  # noqa: S105 - a mode, not a password
    STALL = "stall"
    BLACKHOLE = "blackhole"


class Direction(StrEnum):
    """Which way a blackhole drops bytes."""

    BOTH = "both"
    REQUESTS = "requests"
    """Client to upstream only: the service's requests vanish, the upstream's replies pass."""
    REPLIES = "replies"
    """Upstream to client only: requests arrive (and are acted on), the replies vanish."""


@dataclass(slots=True)
class ProxyStats:
    connections: int = 0
    """Connections accepted."""
    resets: int = 0
    """Connections aborted by :meth:`FaultProxy.reset` or :meth:`FaultProxy.restore`."""
    refused: int = 0
    """Connections accepted whose upstream could not be reached (closed at once)."""
    bytes_forwarded: int = 0
    bytes_dropped: int = 0


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None
    tainted: bool = False
    """Bytes were dropped: the stream is broken for good."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close with a TCP RST (SO_LINGER 0), discarding whatever is buffered."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream_host:upstream_port``; see the module doc."""

    def __init__(
        self, upstream_port: int, upstream_host: str = "127.0.0.1", name: str = ""
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name or f"proxy-{upstream_port}"
        self.stats = ProxyStats()
        self._mode = Mode.PASS
        self._direction = Direction.BOTH
        self._trigger: tuple[bytes, Direction] | None = None
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._port = 0

    # ------------------------------------------------------------------ control (any thread)

    @property
    def port(self) -> int:
        return self._port

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def start(self) -> FaultProxy:
        """Listen on a free loopback port (:attr:`port`) and forward from there."""
        self._thread.start()
        self._call(self._listen)
        return self

    def pass_traffic(self) -> None:
        """Forward again (after a stall: what waited goes through, nothing lost)."""
        self._call(self._set, Mode.PASS, Direction.BOTH)

    def stall(self) -> None:
        self._call(self._set, Mode.STALL, Direction.BOTH)

    def blackhole(self, direction: Direction = Direction.BOTH, *, after: bytes = b"") -> None:
        """Drop bytes from now on, or, with ``after``, from just after a client sends it."""
        if after:
            self._call(self._arm, after, direction)
        else:
            self._call(self._set, Mode.BLACKHOLE, direction)

    @property
    def triggered(self) -> bool:
        """An armed blackhole has begun (or none was armed)."""
        return self._trigger is None

    def restore(self) -> int:
        """Pass traffic again; reset the connections that lost bytes. How many were reset."""
        return self._call(self._restore)

    def reset(self) -> int:
        """Abort every open connection with a RST on both sides; how many."""
        return self._call(self._reset, False)

    def close(self) -> None:
        if not self._thread.is_alive():
            self._loop.close()
            return
        self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, function: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(function(*args), self._loop)
        return future.result(10)

    # ------------------------------------------------------------------ the loop's side

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _arm(self, after: bytes, direction: Direction) -> None:
        self._trigger = (after, direction)

    async def _set(self, mode: Mode, direction: Direction) -> None:
        assert self._flowing is not None  # noqa: S101 - set by _listen
        self._trigger = None
        self._mode, self._direction = mode, direction
        if mode is Mode.STALL:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _restore(self) -> int:
        await self._set(Mode.PASS, Direction.BOTH)
        return await self._reset(True)

    async def _reset(self, only_tainted: bool) -> int:
        doomed = [link for link in self._links if link.tainted or not only_tainted]
        for link in doomed:
            self._drop(link)
        self.stats.resets += len(doomed)
        return len(doomed)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        assert self._flowing is not None  # noqa: S101 - set by _listen
        self._flowing.set()
        for link in list(self._links):
            self._drop(link)  # every pump and swallower sees its connection end
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        if others:
            _, pending = await asyncio.wait(others, timeout=2)
            for task in pending:
                task.cancel()

    def _drop(self, link: _Link) -> None:
        _abort(link.client)
        _abort(link.upstream)
        self._links.discard(link)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if self._mode is Mode.BLACKHOLE:
            # The SYN was answered, nothing behind it: bytes go nowhere until a reset.
            link = _Link(writer, None, tainted=True)
            self._links.add(link)
            await self._swallow(reader, link)
            return
        try:
            upstream_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            self.stats.refused += 1
            _abort(writer)
            return
        link = _Link(writer, upstream)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, upstream, link, Direction.REQUESTS)),
            asyncio.create_task(self._pump(upstream_reader, writer, link, Direction.REPLIES)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)

    async def _swallow(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while link in self._links:
                data = await reader.read(CHUNK)
                if not data:
                    break
                self.stats.bytes_dropped += len(data)
        self._drop(link)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        direction: Direction,
    ) -> None:
        flowing = self._flowing
        assert flowing is not None  # noqa: S101 - set by _listen
        try:
            while link in self._links:
                await flowing.wait()  # a stall reads nothing: the bytes wait in the kernel
                data = await reader.read(CHUNK)
                if not data:
                    break
                await flowing.wait()  # a chunk read as the stall began waits here
                dropping = self._mode is Mode.BLACKHOLE and self._direction in (
                    direction,
                    Direction.BOTH,
                )
                if dropping or link.tainted:
                    link.tainted = True
                    self.stats.bytes_dropped += len(data)
                    continue
                writer.write(data)
                await writer.drain()
                self.stats.bytes_forwarded += len(data)
                trigger = self._trigger
                if trigger is not None and direction is Direction.REQUESTS and trigger[0] in data:
                    await self._set(Mode.BLACKHOLE, trigger[1])
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            # One side ended: end the other (a clean close; resets are explicit).
            if link in self._links:
                self._links.discard(link)
                for end in (link.client, link.upstream):
                    if end is not None:
                        end.close()
