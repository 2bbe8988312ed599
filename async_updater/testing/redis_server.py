"""A real ``redis-server`` for the tests: its own process on a free 127.0.0.1 port, its own temp
dir, no persistence (``--save ''``, ``--appendonly no``), so each test starts from an empty
Redis. ``kill()`` sends SIGKILL (Redis vanishing mid-run, with no goodbye on its sockets) and
``restart()`` brings a fresh, empty one back on the same port, so a client's URL stays valid.

The fixtures in ``conftest.py`` build on this: ``redis_server`` yields a started
``RedisServer``, ``redis_url`` just its URL. Where ``redis-server`` is not installed they skip
(saying how to install it), except under CI, where a missing Redis fails the test: CI's
``scripts/test`` installs it, and a suite that silently skipped would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "RedisUnavailable", "redis_server_binary"]

START_DEADLINE = 10.0  # seconds for a redis-server to answer PING (it takes ~10 ms when idle)
STOP_DEADLINE = 10.0
INSTALL_HINT = (
    "redis-server is not installed: scripts/test installs Debian's redis-server package when "
    "run as root; otherwise run `sudo apt-get install redis-server`"
)


class RedisUnavailable(RuntimeError):
    """``redis-server`` is missing, or would not start (the message says which, with its log)."""


def redis_server_binary() -> str:
    """The path of ``redis-server``, or raise ``RedisUnavailable`` with how to install it."""
    found = shutil.which("redis-server")
    if found is None:
        raise RedisUnavailable(INSTALL_HINT)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    """One inline ``PING`` over a plain socket: no client library between the test and Redis."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``, with its files in ``workdir``.

    ``start()`` picks a free port (first start only) and returns once Redis answers PING;
    ``stop()`` ends it with SIGTERM (SIGKILL after ``STOP_DEADLINE``); ``kill()`` is ``kill -9``;
    ``restart()`` starts it again on the same port, empty. A context manager: stops on exit.
    """

    def __init__(self, workdir: Path, *, binary: str | None = None) -> None:
        self.binary = binary or redis_server_binary()
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``; the same across ``restart()``."""
        if not self.port:
            raise RuntimeError("the Redis server has not been started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> RedisServer:
        if self.running:
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        # A free port can be taken by someone else between the check and Redis binding it;
        # on the first start, try another. A restart must keep its port, so it does not.
        for _ in range(1 if self.port else 5):
            port = self.port or _free_port()
            if self._spawn(port):
                self.port = port
                self.starts += 1
                return self
        raise RedisUnavailable(
            f"redis-server would not start on 127.0.0.1:{port}; its log:\n{self._log_tail()}"
        )

    def _spawn(self, port: int) -> bool:
        argv = [
            self.binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes"),
            *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            *("--daemonize", "no", "--logfile", str(self.log_path), "--loglevel", "notice"),
        ]
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if process.poll() is not None:  # exited: most likely the port was taken
                return False
            if _answers_ping(port):
                self.process = process
                return True
            time.sleep(0.01)
        process.kill()
        process.wait(timeout=STOP_DEADLINE)
        raise RedisUnavailable(
            f"redis-server on 127.0.0.1:{port} did not answer PING within {START_DEADLINE:.0f} s;"
            f" its log:\n{self._log_tail()}"
        )

    def stop(self) -> None:
        """End it gracefully (SIGTERM), escalating to SIGKILL; a no-op when not running."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_DEADLINE)

    def kill(self) -> None:
        """``kill -9``: Redis disappears at once; its port refuses connections until
        ``restart()``. Returns once the process is gone."""
        process = self.process
        if process is None or process.poll() is not None:
            raise RuntimeError("redis-server is not running")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE)

    def restart(self) -> RedisServer:
        """Start a fresh (empty) Redis on the same port, after ``kill()`` or ``stop()``."""
        if self.running:
            raise RuntimeError("redis-server is still running; kill() or stop() it first")
        if not self.port:
            raise RuntimeError("the Redis server has never been started")
        return self.start()

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
