"""Live progress for the terminal: rows done of total, ETA, achieved vs allowed rate, outcome
counts, throttles and retries in the last interval. Drawn with rich when it is installed and
the output is a terminal; otherwise a plain line every few seconds on stderr (or nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any, TextIO

from ..pipeline.stats import RunStats

__all__ = ["ProgressDisplay", "progress_line"]


class _Sample:
    __slots__ = ("done", "requests", "retries", "t", "throttles")

    def __init__(self, t: float, stats: RunStats) -> None:
        self.t = t
        self.done = stats.done
        self.requests = stats.requests
        self.throttles = stats.throttles
        self.retries = stats.retries


def progress_figures(
    stats: RunStats,
    total: int | None,
    allowed_rate: float,
    last: _Sample,
    now: _Sample,
    bound_by: str = "",
) -> dict[str, str]:
    """The figures shown, as text; the rich and the plain display both use them. ``bound_by``
    names the option holding the run back, if one is (not the server)."""
    dt = max(1e-9, now.t - last.t)
    done = now.done + stats.skipped
    c = stats.counts
    return {
        "rows": f"{done}/{total if total else '?'} rows"
        + (f" ({100.0 * min(done, total) / total:.0f}%)" if total else ""),
        "eta": "ETA " + _eta(done, total, (now.done - last.done) / dt),
        "rate": f"{(now.requests - last.requests) / dt:.0f} req/s (allowed {allowed_rate:.0f}/s)"
        + (f" held back by {bound_by}" if bound_by else ""),
        "in_flight": f"in flight {stats.in_flight}",
        "counts": f"updated {c.get('updated', 0)}  "
        + (f"unchanged {c['unchanged']}  " if c.get("unchanged") else "")
        + f"failed {c.get('failed', 0)}  invalid {c.get('invalid', 0)}",
        "recent": f"last {dt:.0f}s: throttled {now.throttles - last.throttles}, "
        f"retries {now.retries - last.retries}",
    }


def progress_line(
    stats: RunStats,
    total: int | None,
    allowed_rate: float,
    last: _Sample,
    now: _Sample,
    bound_by: str = "",
) -> str:
    f = progress_figures(stats, total, allowed_rate, last, now, bound_by)
    return "  ".join(f[k] for k in ("rows", "rate", "counts", "recent", "in_flight", "eta"))


def _eta(done: int, total: int | None, rate: float) -> str:
    if not total or rate <= 0 or done >= total:
        return "-"
    seconds = int((total - done) / rate)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressDisplay:
    """Refreshes while a run goes on. ``mode``: "rich" (live, in place), "plain" (a line every
    ``plain_every`` seconds), or "off". Use as ``async with``; ``print`` writes above it."""

    def __init__(
        self,
        updater: Any,
        total: int | None,
        *,
        mode: str,
        stream: TextIO | None = None,
        interval: float = 0.25,
        plain_every: float = 10.0,
    ) -> None:
        self.updater = updater
        self.total = total
        self.mode = mode
        self.stream = stream or sys.stderr
        self.interval = interval if mode == "rich" else plain_every
        self._task: asyncio.Task[None] | None = None
        self._live: Any = None
        self._console: Any = None
        self._samples: list[_Sample] = []

    @classmethod
    def choose_mode(cls, *, disabled: bool, stream: TextIO) -> str:
        if disabled:
            return "off"
        if not stream.isatty():
            return "off"
        try:
            import rich  # noqa: F401
        except ImportError:
            return "plain"
        return "rich"

    async def __aenter__(self) -> ProgressDisplay:
        if self.mode == "off":
            return self
        if self.mode == "rich":
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream)
            self._live = Live(
                self._render(), console=self._console, refresh_per_second=4, transient=True
            )
            self._live.start()
        self._samples = [_Sample(time.monotonic(), self.updater.stats)]
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._live is not None:
            self._live.stop()
            self._live = None

    def print(self, message: str) -> None:
        """A log line that does not tear the live display."""
        if self._live is not None:
            self._live.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = _Sample(time.monotonic(), self.updater.stats)
            self._samples.append(now)
            # Rates over the last ~5 seconds: steady enough to read, recent enough to trust.
            while len(self._samples) > 2 and now.t - self._samples[0].t > 5.0:
                self._samples.pop(0)
            if self._live is not None:
                self._live.update(self._render())
            else:
                print(self._text(), file=self.stream, flush=True)

    def _pair(self) -> tuple[_Sample, _Sample]:
        stats = self.updater.stats
        last = self._samples[0] if self._samples else _Sample(time.monotonic(), stats)
        now = self._samples[-1] if len(self._samples) > 1 else _Sample(time.monotonic(), stats)
        return last, now

    def _text(self) -> str:
        return progress_line(
            self.updater.stats, self.total, self.updater.rate, *self._pair(), self.updater.bound_by
        )

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        stats = self.updater.stats
        f = progress_figures(
            stats, self.total, self.updater.rate, *self._pair(), self.updater.bound_by
        )
        done = stats.done + stats.skipped
        grid = Table.grid(padding=(0, 2))
        grid.add_row(
            ProgressBar(
                total=float(self.total) if self.total else None, completed=float(done), width=40
            ),
            f["rows"],
            f["eta"],
        )
        lines = Table.grid(padding=(0, 2))
        lines.add_row(f["rate"], f["in_flight"])
        lines.add_row(f["counts"], f["recent"])
        return Group(grid, lines)
