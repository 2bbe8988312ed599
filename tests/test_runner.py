"""The one event-loop runner the CLI and the mock server share."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal

from async_updater.runner import on_signals, run


def test_run_returns_the_result_on_uvloop_when_it_is_installed() -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    expected = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    assert run(loop_module).split(".")[0] == expected


async def test_sigterm_inside_on_signals_calls_the_handler_and_the_handler_goes_after() -> None:
    # Should on_signals install nothing, this catches the signal instead of the test process
    # dying of it.
    missed: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: missed.append(signum))
    try:
        called = asyncio.Event()
        with on_signals(called.set):
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(called.wait(), timeout=10)
        # Nothing left installed: removing the handler again finds none.
        assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not missed
