"""The public face of a run: ``Updater`` opens the parts a run needs (credentials, signer,
transport, a shared limit), runs records through them (``Run`` in ``run.py``) and
reports; ``update_users`` does it all in one call."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import AsyncIterator, Callable

from ..aws.credentials import CredentialProvider, resolve_credentials
from ..aws.redact import Redactor
from ..aws.sigv4 import SigV4Signer
from ..config import UpdaterConfig
from ..io.before import BeforeStore
from ..io.keyindex import KeyIndex
from ..io.report import ReportSink
from ..model import Result, RunSummary
from ..operations.base import Operation
from ..operations.chime import ChimeUpdateUserSettings
from ..ratelimit.clock import Clock, LoopClock
from ..ratelimit.shared import SharedLimit
from ..transport.base import Transport
from ..transport.http import AiohttpTransport
from .retry import RetryBudget
from .run import DONE, Records, Run
from .safety import ClockOffset
from .stats import RunStats

__all__ = ["Updater", "update_users"]


class Updater:
    """Applies an operation to many records against a rate-limited SigV4 API.

    Use as an async context manager (it opens one HTTP session and resolves credentials), then
    either iterate ``results(records)`` as they complete or ``await run(records, sink)``.
    One run at a time per ``Updater``. ``stop()`` drains gracefully (see there).
    """

    def __init__(
        self,
        config: UpdaterConfig | None = None,
        *,
        operation: Operation | None = None,
        credentials: CredentialProvider | None = None,
        transport: Transport | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config or UpdaterConfig()
        self.operation: Operation = operation or ChimeUpdateUserSettings()
        self._credentials = credentials
        self._transport = transport
        self._own_transport = transport is None
        self._clock: Clock = clock or LoopClock()
        self._rand = rand
        self._signer = SigV4Signer(
            host=self.config.host,
            region=self.config.region,
            service=self.config.service or self.operation.service,
        )
        # Outlives runs, so credentials used by an earlier run (or before a refresh) stay known.
        self._redactor = Redactor()
        self._budget = RetryBudget(self.config.retry_budget)
        # Server time minus ours, from the server's Date when it rejects our clock: one offset
        # for every request, kept across runs.
        self.clock_offset = ClockOffset()
        self._run: Run | None = None
        self._shared: SharedLimit | None = None
        self.stats = RunStats(time.monotonic())
        self.on_notice: Callable[[str], None] | None = None
        self._last_notice: dict[str, float] = {}
        self.undelivered_notices = 0  # notices whose ``on_notice`` (or print) raised

    async def __aenter__(self) -> Updater:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Resolve credentials (unless given, or nothing is sent) and open the HTTP session."""
        if self._credentials is None and self.config.sends:
            self._credentials = await resolve_credentials(self.config.profile)
        url = self.config.shared_limit
        if url and self.config.sends and self._shared is None:
            cfg = self.config
            shared = SharedLimit(
                url,
                namespace=f"{self.operation.service}@{cfg.host}/{cfg.limit_scope.value}",
                notice=self.on_notice_or_print,
            )
            await shared.connect()  # unreachable: SharedLimitError, before anything is sent
            self._shared = shared
        if self._transport is None:
            self._transport = AiohttpTransport(
                self.config.endpoint_url,
                concurrency=self.config.max_concurrency,
                timeout=self.config.timeout,
                connect_timeout=self.config.connect_timeout,
                error_parser=self.operation.error_parser,
            )

    async def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared.close()
        if self._transport is not None and self._own_transport:
            await self._transport.close()
            self._transport = None

    @property
    def shared_limit(self) -> SharedLimit | None:
        """The shared limit this updater takes its tokens from (``--shared-limit``), if any."""
        return self._shared

    def on_notice_or_print(self, message: str) -> None:
        """A notice that must reach the operator even with no ``on_notice`` set."""
        self._deliver(self.on_notice or _print_notice, message)

    def _deliver(self, tell: Callable[[str], None], message: str) -> None:
        """Notices are advice, given from the middle of a step (settling an answer, losing
        Redis): one that cannot be delivered (a console gone, a full disk) must not break
        that step. Counted in ``undelivered_notices``."""
        try:
            tell(message)
        except Exception:
            self.undelivered_notices += 1

    def notice(self, message: str, *, key: str = "", every: float = 0.0) -> None:
        """Tell the operator something (via ``on_notice``); with ``key``, at most once per
        ``every`` seconds, so a recurring event cannot flood the terminal."""
        if self.on_notice is None:
            return
        if key:
            now = time.monotonic()
            if now - self._last_notice.get(key, -1e18) < every:
                return
            self._last_notice[key] = now
        self._deliver(self.on_notice, message)

    @property
    def rate(self) -> float:
        """The allowed rate now, summed over scopes with work (requests/s)."""
        run = self._run
        return run.scheduler.rate_total if run is not None else 0.0

    @property
    def cuts(self) -> int:
        run = self._run
        return run.cuts() if run is not None else 0

    @property
    def bound_by(self) -> str:
        """What holds the run back when it is not the server: ``--concurrency`` or ``--rate``
        (empty when the server's limit is what binds, or nothing does)."""
        run = self._run
        return run.bound_by() if run is not None else ""

    def stop(self, *, cancel_in_flight: bool = False) -> None:
        """Stop taking new records; requests in flight finish (or, with ``cancel_in_flight``,
        are abandoned). Records not finished get no result: a resume picks them up."""
        if self._run is not None:
            self._run.stop(cancel_in_flight=cancel_in_flight)

    @property
    def interrupted(self) -> bool:
        return self._run is not None and self._run.stopping

    async def results(
        self,
        records: Records,
        *,
        skip: KeyIndex | None = None,
        befores: BeforeStore | None = None,
    ) -> AsyncIterator[Result]:
        """Yield one ``Result`` per record as it completes (``Result`` items in ``records``,
        e.g. invalid rows from ``CsvSource``, pass straight through). Users in ``skip`` are
        neither sent nor reported. ``befores`` (with ``read_before``) keeps each state read
        before its write is sent, and gives the states an earlier run captured.

        Raises, after everything finished has been yielded: ``SafetyStop`` when a safety rule
        stopped the run (credentials rejected, failure budget spent, a clock that cannot be
        corrected), ``CredentialsError`` if credentials cannot be refreshed mid-run."""
        if self._run is not None and not self._run.finished:
            raise RuntimeError("this Updater is already running")
        if self._transport is None and self.config.sends:
            raise RuntimeError("use 'async with Updater(...)' or call open() first")
        self.stats = RunStats(self._clock.now())
        run = self._run = Run(
            records,
            skip,
            config=self.config,
            operation=self.operation,
            signer=self._signer,
            credentials=self._credentials,
            transport=self._transport,
            redactor=self._redactor,
            budget=self._budget,
            clock=self._clock,
            stats=self.stats,
            notice=self.notice,
            rand=self._rand,
            befores=befores,
            clock_offset=self.clock_offset,
            shared=self._shared,
        )
        run.start()
        try:
            while True:
                result = await run.out.get()
                if result is DONE:
                    break
                yield result
        finally:
            await run.shutdown()
        if run.fatal is not None:
            raise run.fatal

    async def run(
        self,
        records: Records,
        sink: ReportSink | None = None,
        *,
        skip: KeyIndex | None = None,
        befores: BeforeStore | None = None,
    ) -> RunSummary:
        """Process every record, writing each result to ``sink`` (flushed as results arrive)."""
        try:
            async for result in self.results(records, skip=skip, befores=befores):
                if sink is not None:
                    sink.write(result)
                    if self._run is not None and self._run.out.empty():
                        sink.flush()
        finally:
            if sink is not None:
                sink.flush()
        return self.summary()

    def summary(self, report_path: str | None = None) -> RunSummary:
        run = self._run
        elapsed = self._clock.now() - self.stats.started
        return self.stats.summary(
            self._clock.now(),
            cuts=self.cuts,
            final_rate=(run.scheduler.rate_total or None) if run is not None else None,
            interrupted=self.interrupted,
            report_path=report_path,
            bound_by=run.bound_by(over=elapsed) if run is not None else "",
        )


async def update_users(
    records: Records,
    config: UpdaterConfig | None = None,
    *,
    sink: ReportSink | None = None,
    operation: Operation | None = None,
    credentials: CredentialProvider | None = None,
) -> RunSummary:
    """One call for the common case: open an ``Updater``, run ``records``, close it."""
    async with Updater(config, operation=operation, credentials=credentials) as updater:
        return await updater.run(records, sink)


def _print_notice(message: str) -> None:
    print(f"async-updater: {message}", file=sys.stderr, flush=True)
