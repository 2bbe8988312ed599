"""A raw HTTP/1.1 server for fault tests: it answers whatever a script says, including things
no well-behaved framework sends (a reset mid-request, a body cut short, HTML error pages, no
answer at all). Loopback only; keep-alive; one ``decide`` call per request."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Request:
    n: int  # 0-based count of requests seen by the server
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def user_id(self) -> str:
        parts = self.path.split("/")
        return parts[4] if len(parts) > 4 else ""


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer; ``Content-Length`` is added."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Close:
    """Read the request, then close the connection cleanly (FIN) without answering."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Read the request, then reset the connection (RST), optionally after part of an answer."""

    partial: bytes = b""


@dataclass(frozen=True, slots=True)
class Truncate:
    """Answer with headers promising ``length`` body bytes, send fewer, then close."""

    status: int = 204
    length: int = 100
    sent: bytes = b"{"


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer (until the server stops)."""


Action = Reply | Close | Reset | Truncate | Hang
Decide = Callable[[Request], Action]

_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden"}


def ok() -> Reply:
    return Reply(204, headers={"x-amzn-RequestId": "rid-ok"})


class FaultServer:
    """``async with FaultServer(decide) as server: server.url``; ``server.requests`` lists
    what arrived (in order)."""

    def __init__(self, decide: Decide) -> None:
        self.decide = decide
        self.requests: list[Request] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = asyncio.Event()

    async def __aenter__(self) -> FaultServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # an idle keep-alive reader sees EOF
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=0.5)
        for task in list(self._tasks):
            task.cancel()
        await self._server.wait_closed()

    def attempts(self, user_id: str) -> int:
        return sum(1 for r in self.requests if r.user_id == user_id)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while not await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # stopping; asyncio's stream callback would log a cancelled task as an error
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Handle one request; True when the connection is finished."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Request(len(self.requests), method, path, headers, body)
        self.requests.append(request)
        action = self.decide(request)
        if isinstance(action, Reply):
            if action.delay:
                await asyncio.sleep(action.delay)
            writer.write(_head(action.status, action.headers, len(action.body)) + action.body)
            await writer.drain()
            return False
        if isinstance(action, Close):
            writer.close()
            return True
        if isinstance(action, Reset):
            if action.partial:
                writer.write(action.partial)
                await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return True
        if isinstance(action, Truncate):
            writer.write(_head(action.status, {}, action.length) + action.sent)
            await writer.drain()
            writer.close()
            return True
        await self._stopping.wait()
        return True


def _head(status: int, headers: dict[str, str], length: int) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
