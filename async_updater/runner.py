"""The one way this package runs an event loop, for the CLI and the mock server's command line
alike: uvloop when it is installed (the ``fast`` extra), else asyncio's default loop; and
SIGINT / SIGTERM handled inside the loop, by a callback, the same way for both."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["on_signals", "run"]

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``main()`` makes to completion on a new loop and return its result."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


@contextlib.contextmanager
def on_signals(handler: Callable[[], None]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM call ``handler`` in the running loop instead of
    raising ``KeyboardInterrupt``. Where the loop takes no signal handlers (another platform, or
    not the main thread) nothing changes: Ctrl-C raises as usual."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
