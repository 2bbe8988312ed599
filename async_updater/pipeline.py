"""The orchestrator: records in, one signed request per record under the limiter, results out.

    records --feeder--> work queue --N workers--> bucket.acquire -> sign -> send -> classify
                             ^                                                        |
                             +----- retry timer (backoff / Retry-After) <--------------+
                                                                                      v
                                                                           results (async iterator)

Workers are ``concurrency`` tasks, each with at most one request in flight. A record waiting
for a retry holds no worker: a timer puts it back at the front of the work queue. ``queue_size``
tickets bound the records alive at once, so memory is flat in the input size.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import replace
from time import perf_counter
from typing import Any

from .before import BeforeStore
from .config import LimitScope, UpdaterConfig
from .errors import CredentialsError, RowError, UpdaterError
from .keyindex import KeyIndex
from .limiter import BucketClosed, Cancellable, Clock, LoopClock, RateController, TokenBucket
from .model import Record, Result, RunSummary, Status
from .operation import ChimeUpdateUserSettings, HttpRequest, Operation
from .redact import Redactor
from .report import ReportSink
from .retry import ErrorClass, RetryBudget, classify, full_jitter_backoff
from .signing import CredentialProvider, Credentials, SigV4Signer, resolve_credentials
from .stats import RunStats
from .transport import AiohttpTransport, Response, Transport, TransportError

__all__ = ["Updater", "update_users"]

Records = Iterable[Any] | AsyncIterable[Any]
_DONE = object()
_STOP_CHECK_EVERY = 256


class _Scope:
    """The limiter of one scope (the whole run, or one account)."""

    __slots__ = ("bucket", "controller")

    def __init__(self, bucket: TokenBucket, controller: RateController) -> None:
        self.bucket = bucket
        self.controller = controller


class _Item:
    """A record on its way: the request is built once, signed again for every attempt."""

    __slots__ = ("attempts", "record", "refreshed", "request", "scope", "timer")

    def __init__(self, record: Record, request: HttpRequest, scope: _Scope) -> None:
        self.record = record
        self.request = request
        self.scope = scope
        self.attempts = 0
        self.refreshed = False
        self.timer: Cancellable | None = None


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
        self._scopes: dict[str, _Scope] = {}
        # Outlives runs, so credentials used by an earlier run (or before a refresh) stay known.
        self._redactor = Redactor()
        self._budget = RetryBudget(self.config.retry_budget)
        self._run: _Run | None = None
        self.stats = RunStats(time.monotonic())
        self.total_rate = 0.0
        self.on_notice: Callable[[str], None] | None = None
        self._last_notice: dict[str, float] = {}

    async def __aenter__(self) -> Updater:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Resolve credentials (unless given, or a dry run) and open the HTTP session."""
        if self._credentials is None and not self.config.dry_run:
            self._credentials = await resolve_credentials(self.config.profile)
        if self._transport is None:
            self._transport = AiohttpTransport(
                self.config.endpoint_url,
                concurrency=self.config.concurrency,
                timeout=self.config.timeout,
                connect_timeout=self.config.connect_timeout,
            )

    async def close(self) -> None:
        if self._transport is not None and self._own_transport:
            await self._transport.close()
            self._transport = None

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
        self.on_notice(message)

    @property
    def rate(self) -> float:
        """The allowed rate now, summed over scopes (requests/s)."""
        return self.total_rate

    @property
    def cuts(self) -> int:
        return sum(s.controller.cuts for s in self._scopes.values())

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
        before its write is sent, and gives the states an earlier run captured. Raises
        ``CredentialsError`` if credentials cannot be refreshed mid-run, after everything
        finished has been yielded."""
        if self._run is not None and not self._run.finished:
            raise RuntimeError("this Updater is already running")
        if self._transport is None and not self.config.dry_run:
            raise RuntimeError("use 'async with Updater(...)' or call open() first")
        now = self._clock.now()
        self.stats = RunStats(now)
        run = self._run = _Run(self, records, skip, befores)
        run.start()
        try:
            while True:
                result = await run.out.get()
                if result is _DONE:
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
        return self.stats.summary(
            self._clock.now(),
            cuts=self.cuts,
            final_rate=self.total_rate or None,
            interrupted=self.interrupted,
            report_path=report_path,
        )

    def _scope(self, account_id: str) -> _Scope:
        key = account_id if self.config.limit_scope is LimitScope.ACCOUNT else ""
        scope = self._scopes.get(key)
        if scope is None:
            rate = self.config.rate
            scope = _Scope(
                TokenBucket(rate, clock=self._clock),
                RateController(rate, settings=self.config.controller),
            )
            self._scopes[key] = scope
            self.total_rate += rate
        return scope


class _Run:
    """The state of one run: queues, tasks, counters. Private to ``Updater``."""

    def __init__(
        self,
        up: Updater,
        records: Records,
        skip: KeyIndex | None,
        befores: BeforeStore | None = None,
    ) -> None:
        cfg = up.config
        self.up = up
        self.cfg = cfg
        self.records = records
        self.skip = skip
        self.befores = befores  # issue 13: read-before flow (not wired yet)
        self.stats = up.stats
        self.clock = up._clock
        self.work: asyncio.PriorityQueue[tuple[int, int, _Item | None]] = asyncio.PriorityQueue()
        self.out: asyncio.Queue[Any] = asyncio.Queue(maxsize=cfg.queue_size)
        self.tickets = asyncio.Semaphore(cfg.queue_size)
        self.seq = itertools.count()
        self.outstanding = 0
        self.waiting: set[_Item] = set()
        self.feeder_done = False
        self.finished = False
        self.stopping = False
        self.fatal: BaseException | None = None
        self.feeder: asyncio.Task[None] | None = None
        self.workers: list[asyncio.Task[None]] = []
        self.supervisor: asyncio.Task[None] | None = None
        self.refresh_lock = asyncio.Lock()

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.feeder = asyncio.ensure_future(self._feed_all())
        n = 0 if self.cfg.dry_run else self.cfg.concurrency
        self.workers = [asyncio.ensure_future(self._worker()) for _ in range(n)]
        self.supervisor = asyncio.ensure_future(self._supervise())

    async def _supervise(self) -> None:
        tasks: list[asyncio.Task[None]] = [t for t in (self.feeder, *self.workers) if t]
        try:
            pending: set[asyncio.Task[None]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        self._fail(task.exception())
        finally:
            self.finished = True
            await self.out.put(_DONE)

    def _fail(self, exc: BaseException | None) -> None:
        if exc is None:
            return
        if self.fatal is None:
            self.fatal = exc
        self.stop(cancel_in_flight=not isinstance(exc, UpdaterError))

    def stop(self, *, cancel_in_flight: bool = False) -> None:
        if not self.stopping:
            self.stopping = True
            if self.feeder is not None and not self.feeder.done():
                self.feeder.cancel()
            for scope in self.up._scopes.values():
                scope.bucket.close()
            for item in list(self.waiting):
                if item.timer is not None:
                    item.timer.cancel()
                self._drop(item)
        if cancel_in_flight:
            for task in self.workers:
                task.cancel()

    async def shutdown(self) -> None:
        """Called when the consumer leaves (normally or not): nothing may keep running."""
        if not self.finished:
            self.stop(cancel_in_flight=True)
        if self.supervisor is not None:
            while not self.supervisor.done():
                # Drain so the supervisor's final put cannot block.
                while not self.out.empty():
                    self.out.get_nowait()
                await asyncio.wait({self.supervisor}, timeout=0.05)

    # -- feeding ------------------------------------------------------------------------

    async def _feed_all(self) -> None:
        try:
            records = self.records
            if isinstance(records, AsyncIterable):
                async for record in records:
                    if not await self._feed(record):
                        break
            else:
                for n, record in enumerate(records, 1):
                    if not await self._feed(record):
                        break
                    if n % _STOP_CHECK_EVERY == 0:
                        await asyncio.sleep(0)  # a synchronous source must not starve workers
        finally:
            self.feeder_done = True
            self._maybe_finish()

    async def _feed(self, record: Any) -> bool:
        if self.stopping:
            return False
        if isinstance(record, Result):
            await self._emit(record)
            return True
        if self.skip is not None and (record.account_id, record.user_id) in self.skip:
            self.stats.skipped += 1
            return True
        try:
            request = self.up.operation.build(record)
        except RowError as exc:
            await self._emit(_invalid(record, str(exc)))
            return True
        if self.cfg.dry_run:
            await self._emit(
                Result(
                    record.account_id,
                    record.user_id,
                    Status.PLANNED,
                    message=f"{request.method} {request.path}",
                    line=record.line,
                )
            )
            return True
        await self.tickets.acquire()
        if self.stopping:
            self.tickets.release()
            return False
        item = _Item(record, request, self.up._scope(record.account_id))
        self.outstanding += 1
        self.work.put_nowait((1, next(self.seq), item))
        return True

    def _maybe_finish(self) -> None:
        if self.feeder_done and self.outstanding == 0:
            for _ in self.workers:
                self.work.put_nowait((2, next(self.seq), None))

    async def _emit(self, result: Result) -> None:
        self.stats.record_result(result)
        await self.out.put(result)

    async def _complete(self, item: _Item, result: Result) -> None:
        await self._emit(result)
        self._release(item)

    def _drop(self, item: _Item) -> None:
        """Give up on an item without a result (the run is stopping)."""
        self.waiting.discard(item)
        self._release(item)

    def _release(self, item: _Item) -> None:
        self.outstanding -= 1
        self.tickets.release()
        self._maybe_finish()

    # -- sending ------------------------------------------------------------------------

    async def _worker(self) -> None:
        work = self.work
        while True:
            _, _, item = await work.get()
            if item is None:
                return
            if self.stopping:
                self._drop(item)
                continue
            try:
                await self._attempt(item)
            except BucketClosed:
                self._drop(item)
            except asyncio.CancelledError:
                self._drop(item)
                raise

    async def _attempt(self, item: _Item) -> None:
        scope = item.scope
        await scope.bucket.acquire()
        if not self.out.empty():
            # Let the consumer write (and flush) the answers already out before this worker
            # sends again: then a crash (kill -9) leaves unreported, per worker, either one
            # answer or one request in flight, never both, so a resume re-sends at most
            # ``concurrency`` users that were applied.
            await asyncio.sleep(0)
        if self.stopping:
            self._drop(item)
            return
        assert self.up._credentials is not None and self.up._transport is not None
        credentials = await self.up._credentials.current()
        redactor = self.up._redactor
        redactor.remember(credentials)
        request = item.request
        headers = self.up._signer.sign(
            request.method,
            request.path,
            request.body,
            request.content_type,
            credentials,
            query=request.query,
            headers=request.headers,  # returned among the signed headers, so sent with them
        )
        stats = self.stats
        sent_at = self.clock.now()
        item.attempts += 1
        stats.requests += 1
        stats.in_flight += 1
        stats.timeline.at(sent_at).sent += 1
        started = perf_counter()  # the loop's clock may tick in whole ms (uvloop): not for latency
        try:
            response = await self.up._transport.send(
                request.method, request.target, headers, request.body
            )
        except TransportError as exc:
            response = Response(0, "", exc.code, str(exc))
        finally:
            stats.in_flight -= 1
        if not 200 <= response.status < 300:
            # Server text enters the program here; a success carries none worth the cost.
            response = redactor.response(response, headers)
        latency = perf_counter() - started
        now = self.clock.now()
        stats.latencies.add(latency * 1000.0)
        kind = classify(response.status or None, response.error_code)
        self._observe(scope, kind, response, now, sent_at)
        if kind is ErrorClass.SUCCESS:
            self.up._budget.on_success()
            await self._complete(item, self._result(item, Status.UPDATED, response, latency))
        elif kind is ErrorClass.FINAL:
            await self._complete(item, self._result(item, Status.FAILED, response, latency))
        elif kind is ErrorClass.EXPIRED_CREDENTIALS and not item.refreshed:
            item.refreshed = True
            try:
                await self._refresh_credentials(credentials)
            except CredentialsError as exc:
                await self._complete(item, self._result(item, Status.FAILED, response, latency))
                self._fail(exc)
                return
            self._retry(item, 0.0)
        elif kind is ErrorClass.EXPIRED_CREDENTIALS:
            await self._complete(item, self._result(item, Status.FAILED, response, latency))
        elif self.stopping:
            self._drop(item)
        elif item.attempts >= self.cfg.max_attempts:
            result = self._result(item, Status.FAILED, response, latency)
            await self._complete(
                item, _with_message(result, f"gave up after {item.attempts} attempts: ")
            )
        elif kind is not ErrorClass.THROTTLED and not self.up._budget.try_spend():
            self.up.notice(
                "retry budget exhausted: failing errors are no longer retried until requests "
                "succeed again (the server or network is failing most requests)",
                key="budget",
                every=30.0,
            )
            result = self._result(item, Status.FAILED, response, latency)
            await self._complete(item, _with_message(result, "retry budget exhausted: "))
        else:
            stats.retries += 1
            delay = full_jitter_backoff(
                item.attempts,
                base=self.cfg.backoff_base,
                cap=self.cfg.backoff_cap,
                rand=self.up._rand,
            )
            self._retry(item, delay)

    async def _refresh_credentials(self, rejected: Credentials) -> None:
        """Refresh once for all the requests that were signed with ``rejected``: up to
        ``concurrency`` of them meet the expiry together, and a refresh may reload the whole
        AWS chain (SSO, STS). Those that find the credentials already replaced sign anew."""
        provider = self.up._credentials
        assert provider is not None
        async with self.refresh_lock:
            if await provider.current() != rejected:
                return
            self.up.notice(
                "the server says our credentials expired; refreshing them from the AWS chain",
                key="refresh",
                every=10.0,
            )
            await provider.refresh()

    def _observe(
        self, scope: _Scope, kind: ErrorClass, response: Response, now: float, sent_at: float
    ) -> None:
        """Feed the answer to the rate controller and the figures."""
        stats = self.stats
        point = stats.timeline.at(now)
        controller = scope.controller
        adaptive = self.cfg.adaptive
        if kind is ErrorClass.THROTTLED or kind is ErrorClass.OVERLOADED:
            if kind is ErrorClass.THROTTLED:
                stats.throttles += 1
                point.throttled += 1
                if adaptive:
                    controller.on_throttled(now, sent_at)
            else:
                stats.server_errors += 1
                point.errors += 1
                if adaptive:
                    controller.on_overloaded(now, sent_at)
            if response.retry_after:
                until = now + min(response.retry_after, self.cfg.max_cooldown)
                if until > scope.bucket.paused_until:
                    stats.cooldowns += 1
                    scope.bucket.pause_until(until)
                    if adaptive:
                        controller.hold(until, now)
                    self.up.notice(
                        f"the server asked us to wait {until - now:.1f} s; pausing",
                        key="cooldown",
                        every=30.0,
                    )
        elif response.status:
            point.accepted += 1
            if kind is ErrorClass.TRANSIENT:
                stats.server_errors += 1
                point.errors += 1
            if adaptive:
                controller.on_accepted(now, sent_at)
        else:
            point.errors += 1
        if adaptive:
            rate = controller.rate_at(now)
            point.allowed_rate = self._sync_rate(scope, rate)
        else:
            point.allowed_rate = self.up.total_rate
        point.in_flight = stats.in_flight

    def _sync_rate(self, scope: _Scope, rate: float) -> float:
        old = scope.bucket.rate
        # Re-timing the bucket on every answer would cost more than it is worth: 0.5% steps.
        if abs(rate - old) > 0.005 * old:
            scope.bucket.set_rate(rate)
            self.up.total_rate += rate - old
        return self.up.total_rate

    def _retry(self, item: _Item, delay: float) -> None:
        if delay <= 0:
            self.work.put_nowait((0, next(self.seq), item))
            return
        self.waiting.add(item)
        item.timer = self.clock.call_at(self.clock.now() + delay, lambda: self._requeue(item))

    def _requeue(self, item: _Item) -> None:
        item.timer = None
        self.waiting.discard(item)
        self.work.put_nowait((0, next(self.seq), item))

    def _result(self, item: _Item, status: Status, response: Response, latency: float) -> Result:
        record = item.record
        return Result(
            record.account_id,
            record.user_id,
            status,
            response.status or None,
            response.error_code,
            response.message,
            item.attempts,
            latency * 1000.0,
            response.request_id,
            record.line,
        )


def _with_message(result: Result, prefix: str) -> Result:
    return replace(result, message=prefix + result.message)


def _invalid(record: Any, message: str) -> Result:
    line = getattr(record, "line", 0)
    return Result(
        record.account_id,
        record.user_id,
        Status.INVALID,
        error_code="InvalidRow",
        message=f"line {line}: {message}" if line else message,
        line=line,
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
