"""One run per report: an exclusive ``flock`` on ``REPORT.lock``, held for the whole run.

Two runs writing one report would each send the users the other has not reported yet, so
users get applied twice (a restarted Kubernetes pod whose old copy still runs). The lock file
names its holder (pid, host, start time) so that the run that is refused can say who has it.

The kernel releases a ``flock`` when its holder dies, however it dies, so a lock is never
stale; what a crash leaves behind is only the holder's name in the file. A run that finds the
lock free but a name in the file takes it over and says so (a clean exit empties the file).

The lock file stays after a run, empty: deleting it would open a race in which a run that
opened the old file and a run that created a new one each lock "the" lock file. An empty file
costs nothing and its emptiness says that the last run released it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ReportError, ReportLocked

__all__ = ["LockHolder", "ReportLock", "lock_path"]

_MAX_READ = 4096


def lock_path(report: str | os.PathLike[str]) -> Path:
    """``REPORT.lock``, next to the report (beside a symlink, not its target)."""
    p = Path(report)
    return p.with_name(p.name + ".lock")


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or held) a report: process id, host name, and when it took the lock (UTC)."""

    pid: int
    host: str
    since: str

    @classmethod
    def me(cls, now: dt.datetime | None = None) -> LockHolder:
        when = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(os.getpid(), socket.gethostname(), when)

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder written in a lock file; None for an empty or unreadable one."""
        try:
            data = json.loads(text)
            holder = cls(int(data["pid"]), str(data["host"]), str(data["since"]))
        except (ValueError, KeyError, TypeError):
            return None
        return holder

    def dump(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "since": self.since}) + "\n"

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host}, since {self.since}"

    def alive_here(self) -> bool | None:
        """Whether this process still runs: None when it is on another host (unknowable)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # it exists, under another user
            return True
        return True


class ReportLock:
    """An exclusive lock on ``report`` for one run. ``acquire`` fails at once (never waits) with
    ``ReportLocked`` naming the holder; a lock whose holder died is taken over with a call to
    ``notice``. Use as a context manager; ``release`` empties the lock file and unlocks it."""

    __slots__ = ("_fd", "_notice", "path", "report")

    def __init__(
        self, report: str | os.PathLike[str], *, notice: Callable[[str], None] | None = None
    ) -> None:
        self.report = Path(report)
        self.path = lock_path(report)
        self._notice = notice
        self._fd: int | None = None

    def __enter__(self) -> ReportLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError("this lock is already held")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ReportError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LockHolder.parse(_read(fd))
                who = str(holder) if holder else "a run that has not written its name yet"
                raise ReportLocked(
                    f"{self.report} is in use by another run ({who}; lock file {self.path}): "
                    "wait for it to end, or stop it, before running again",
                    str(holder or ""),
                ) from None
            except OSError as exc:  # e.g. ENOLCK: a file system without locks
                raise ReportError(f"cannot lock {self.path}: {exc.strerror}") from None
            previous = LockHolder.parse(_read(fd))
            if previous is not None and self._notice is not None:
                alive = previous.alive_here()
                state = {
                    False: "which is no longer running",
                    True: "whose pid now belongs to another process",
                    None: "whose lock is free",
                }[alive]
                self._notice(f"taking over the lock of {self.report} left by {previous} ({state})")
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, LockHolder.me().dump().encode(), 0)
            except OSError as exc:
                raise ReportError(
                    f"cannot write the lock file {self.path}: {exc.strerror}"
                ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Empty the lock file (the run ended cleanly) and let go of it. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):  # the lock goes with the descriptor anyway
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read(fd: int) -> str:
    try:
        return os.pread(fd, _MAX_READ, 0).decode("utf-8", "replace")
    except OSError:
        return ""
