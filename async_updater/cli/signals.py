"""Ctrl-C and SIGTERM during a run: a graceful stop first, then abandoning what is in flight."""

from __future__ import annotations

import asyncio

from ..pipeline.updater import Updater
from ..runner import on_signals


class GracefulStop:
    """First SIGINT/SIGTERM: graceful stop. Second, or ``GRACE`` seconds later: abandon the
    requests in flight (a hung server must not hold a stop for the whole --timeout; a process
    supervisor sends SIGTERM once and SIGKILL soon after)."""

    GRACE = 5.0

    def __init__(self, updater: Updater) -> None:
        self.updater = updater
        self.count = 0
        self.deadline: asyncio.TimerHandle | None = None
        self._signals = on_signals(self._handle)

    def _handle(self) -> None:
        self.count += 1
        if self.count == 1:
            # Stop first, then say so: saying it can fail (a console gone), stopping must not.
            self.updater.stop()
            self.deadline = asyncio.get_running_loop().call_later(self.GRACE, self._abandon)
            self.updater.on_notice_or_print(
                f"stopping: no new requests; waiting up to {self.GRACE:g} s for those in flight "
                "(press Ctrl-C again to abandon them)"
            )
        else:
            self._abandon()

    def _abandon(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.updater.stop(cancel_in_flight=True)
        self.updater.on_notice_or_print(
            "abandoning the requests in flight (a --resume sends them again)"
        )

    def __enter__(self) -> GracefulStop:
        self._signals.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self._signals.__exit__(None, None, None)
