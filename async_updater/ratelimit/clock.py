"""Time for the rate-limiting parts: one monotonic clock, injectable so tests can drive it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

__all__ = ["Cancellable", "Clock", "LoopClock"]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time in seconds, and a way to run a callback at a given time."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable: ...


class LoopClock:
    """The running event loop's monotonic clock (virtual in a virtual-time loop)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Cancellable:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.call_at(when, callback)
